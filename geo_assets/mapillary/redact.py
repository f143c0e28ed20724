"""Remove secrets from text before it is logged, stored or raised.

Signed thumbnail URLs carry their signature in the query string, and error text
from `requests`/`urllib3` quotes the URL it failed on (in full, or as
`url: /path?query`). `redact()` drops every query string and fragment from
every URL or path in a text, and the access token wherever it appears.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

# A URL (scheme://...) or an absolute path, then '?' and its query: 'url: /p?q' in urllib3 errors.
_URLISH_RE = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.\-]*://|(?<![\w.])/)[^\s'\"<>)\]}?]*\?[^\s'\"<>)\]}]*")

REDACTED = "?<query removed>"
URL_MAX_CHARS = 4096


def redact(text: object, secrets: tuple[str, ...] = ()) -> str:
    """`text` with URL query strings and the given secrets removed."""
    out = str(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return _URLISH_RE.sub(lambda m: m.group(0).split("?", 1)[0] + REDACTED, out)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be downloaded (None when it can): only absolute http(s) URLs
    with a host. The reason never quotes the URL (signed URLs carry secrets)."""
    if len(url) > URL_MAX_CHARS:
        return f"URL is longer than {URL_MAX_CHARS} characters"
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return "URL contains spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "URL does not parse"
    if parts.scheme.lower() not in ("http", "https"):
        return f"URL scheme {parts.scheme[:16]!r} is not http or https"
    if not parts.hostname:
        return "URL has no host"
    return None


def strip_query(url: str) -> str:
    """scheme://host/path of a URL: no query, no fragment, no user:password."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedactingFilter(logging.Filter):
    """A logging filter that applies redact() to the formatted message (urllib3
    logs every request line, query included, at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to the handler
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(names: tuple[str, ...] = ("urllib3.connectionpool", "urllib3", "requests")) -> None:
    """Idempotent: add RedactingFilter to the loggers that quote request URLs."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
