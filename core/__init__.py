"""Shared infrastructure: database, event bus, audit log, identity."""
