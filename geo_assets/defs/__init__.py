"""Dagster definitions: thin wrappers that call the pure modules of geo_assets."""
