"""Remove secrets from text before it is logged, stored or raised.

Signed thumbnail URLs carry their signature in the query string, and error text
from `requests`/`urllib3` quotes the URL it failed on (in full, or as
`url: /path?query`). `redact()` drops every query string, fragment and user:password
from every URL or path in a text, and the access token wherever it appears. It
parses each URL (urlsplit) from where it starts to the next whitespace, rather than
matching a character class: a path holding `)`, `'` or `"` no longer ends the match
before its query. (URLs with whitespace never get this far: `url_problem` refuses them.)
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

# Where a URL (scheme://...) or an absolute path starts inside a whitespace-free token
# ('url: /p?q' in urllib3 errors, "('http://h/p?q')" in requests' reprs).
_URL_START_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://|(?<![\w.])/")
_TOKEN_RE = re.compile(r"\S+")

REDACTED = "?<query removed>"
URL_MAX_CHARS = 4096


def redact(text: object, secrets: tuple[str, ...] = ()) -> str:
    """`text` with URL query strings and the given secrets removed."""
    out = str(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return _TOKEN_RE.sub(_redact_token, out)


def _redact_token(match: re.Match) -> str:
    token = match.group(0)
    start = _URL_START_RE.search(token)
    if start is None:
        return token
    head, url = token[:start.start()], token[start.start():]
    try:
        parts = urlsplit(url)
        secret_part = bool(parts.query or parts.fragment or "?" in url or "#" in url or "@" in parts.netloc)
        if not secret_part:
            return token
        netloc = parts.netloc.rpartition("@")[2]  # user:password@ dropped
        clean = (f"{parts.scheme}://{netloc}" if parts.scheme else netloc) + parts.path
    except ValueError:  # not even urlsplit can read it: keep nothing past the first ? or #
        cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=len(url))
        clean = url[:cut]
    return head + clean + REDACTED


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
    return host_problem(parts.hostname)


def host_problem(host: str) -> str | None:
    """Why the HTTP client could not connect to `host` by name (None when it can): urllib3
    encodes it with IDNA and raises LocationParseError, outside requests' own errors,
    for an empty label ('a..b', 'x..', '.x'), a label over 63 characters, or a name over 253."""
    if host.startswith("[") or ":" in host:
        return None  # an IPv6 literal: urlsplit has already checked it
    if len(host.rstrip(".")) > 253:
        return "URL host is longer than 253 characters"
    try:
        host.encode("idna")
    except UnicodeError:
        return "URL host is not a valid name (an empty label, or one over 63 characters)"
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
