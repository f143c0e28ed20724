"""geo_assets: a Dagster asset graph for a privacy-preserving UK image geolocator."""

__version__ = "0.1.0"
