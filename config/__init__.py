"""Typed settings, site plans (TOML) and demo data."""
