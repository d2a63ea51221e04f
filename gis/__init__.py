"""Jurisdictions, gazetteer, routing/ETA, spatial index, map building, offline tiles."""
