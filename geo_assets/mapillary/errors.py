"""Exceptions of the Mapillary client. Messages never contain the access token."""

from __future__ import annotations


class MapillaryError(Exception):
    """Base class: anything the Mapillary client raises on purpose."""


class MapillaryAuthError(MapillaryError):
    """HTTP 401 or Graph error code 190: the token is missing, wrong or expired."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class MapillaryRequestError(MapillaryError):
    """The API refused the request (4xx other than auth), with the API's own message."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None, api_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.api_message = api_message


class MapillaryDownloadError(MapillaryRequestError):
    """An image download came back as something other than a usable image
    (wrong Content-Type, too large, HTTP 403 for an expired URL, 404...).
    `bad_url`: the URL itself was refused before any request (a `bad_url` reject)."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None,
                 api_message: str | None = None, *, bad_url: bool = False) -> None:
        super().__init__(message, status=status, code=code, api_message=api_message)
        self.bad_url = bad_url


class MapillaryUnavailableError(MapillaryError):
    """Retries exhausted: rate limits, 5xx, timeouts, connection errors or malformed answers."""

    def __init__(self, message: str, attempts: int = 0, last_error: str = "") -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error
