"""Client for the Mapillary Graph API v4 (and the local server that speaks it)."""

from geo_assets.mapillary.errors import (
    MapillaryAuthError,
    MapillaryDownloadError,
    MapillaryError,
    MapillaryRequestError,
    MapillaryUnavailableError,
)

__all__ = [
    "MapillaryAuthError",
    "MapillaryDownloadError",
    "MapillaryError",
    "MapillaryRequestError",
    "MapillaryUnavailableError",
]
