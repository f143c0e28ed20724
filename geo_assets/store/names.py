"""The one check on names that become parts of stored paths or keys.

Image ids come from an API, partition keys and table variants from users: each must
be one plain path component (letters, digits, '.', '_', '-', '='; no separator, no
'..', not hidden), so no name can place a file outside storage or collide with the
hidden temp files and leases the backends keep beside the data.
"""

from __future__ import annotations

import re

_COMPONENT_RE = re.compile(r"[A-Za-z0-9\-][A-Za-z0-9._=\-]{0,127}")


class UnsafePathError(ValueError):
    """A name would put a file outside storage (or is not one plain path component)."""


def safe_component(name: str, what: str) -> str:
    """`name` if it is one plain path component; else UnsafePathError naming `what`."""
    text = str(name)
    if not _COMPONENT_RE.fullmatch(text) or ".." in text:
        raise UnsafePathError(f"{what} {text[:60]!r} is not a safe file name")
    return text


def check_key(key: str, what: str = "key") -> str:
    """`key` when every '/'-separated part is a safe component (so no empty parts either)."""
    parts = str(key).split("/")
    for part in parts:
        safe_component(part, what)
    return "/".join(parts)
