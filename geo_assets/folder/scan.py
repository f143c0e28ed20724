"""List a photo folder safely, and remember what each file said (the per-tile manifest).

Safety: only regular files named *.jpg / *.jpeg are photos; hidden files and folders,
symlinked folders, links that leave the folder, FIFOs and devices are skipped (counted,
never opened); a file is opened with O_NOFOLLOW | O_NONBLOCK and checked to be a regular
file again, so a file swapped for a link or a pipe after the listing is not read either.
File names are never used to build a storage path (ids are digests), and appear in
messages only through ascii(). Folders are walked in sorted order, so listings are stable.

The manifest maps a relative path to (size, mtime_ns) and what the file said (header
metadata, and once read, sha256 and image id): a file whose size and mtime are unchanged is
never opened again.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from geo_assets.folder.metadata import PhotoMeta, read_photo_meta
from geo_assets.folder.sidecars import DESCRIPTION_FILE

PHOTO_SUFFIXES = (".jpg", ".jpeg")
MAX_PHOTO_BYTES = 64 * 1024 * 1024  # far above any camera JPEG; bounds memory per file
MANIFEST_STATE = "folder_manifest"
MANIFEST_VERSION = 1
UNREADABLE = "unreadable"  # PhotoMeta.error prefix when the file could not be opened (never cached)


class FolderMissingError(FileNotFoundError):
    """The configured photo folder does not exist or is not a folder."""


@dataclass(frozen=True)
class PhotoFile:
    rel: str  # POSIX path relative to the folder (the link's own name for a link inside it)
    path: str  # the real file to open
    size: int
    mtime_ns: int


@dataclass
class FolderListing:
    root: str
    photos: list[PhotoFile] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def _inside(real: str, root: str) -> bool:
    return os.path.commonpath([root, real]) == root


def list_folder(folder: str | Path, exclude: tuple[str | Path, ...] = ()) -> FolderListing:
    root = os.path.realpath(str(folder))
    if not os.path.isdir(root):
        raise FolderMissingError(f"image folder {str(folder)!r} does not exist or is not a folder "
                                 f"(set GEO_ASSETS_FOLDER to a folder of geotagged JPEGs)")
    excluded = {os.path.realpath(str(e)) for e in exclude}
    listing = FolderListing(root=root)

    def on_error(exc: OSError) -> None:
        listing.skipped["unreadable_folder"] += 1

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=on_error):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if d.startswith("."):
                listing.skipped["hidden"] += 1
            elif os.path.islink(full):
                listing.skipped["symlinked_folder"] += 1  # never followed: loops, or a way out
            elif os.path.realpath(full) in excluded:
                listing.skipped["storage_folder"] += 1
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            lower = name.lower()
            is_photo = lower.endswith(PHOTO_SUFFIXES)
            is_sidecar = name == DESCRIPTION_FILE or lower.endswith(".csv")
            if name.startswith("."):
                listing.skipped["hidden"] += 1
                continue
            if not (is_photo or is_sidecar):
                listing.skipped["not_jpeg_name"] += 1
                continue
            try:
                st = os.lstat(full)
                real = full
                if stat.S_ISLNK(st.st_mode):
                    real = os.path.realpath(full)
                    if not _inside(real, root):
                        listing.skipped["link_outside_folder"] += 1
                        continue
                    st = os.stat(real)
            except OSError:
                listing.skipped["unreadable_file"] += 1
                continue
            if not stat.S_ISREG(st.st_mode):
                listing.skipped["not_regular_file"] += 1
                continue
            if is_sidecar:
                listing.sidecars.append(Path(real))
                continue
            rel = Path(os.path.relpath(full, root)).as_posix()
            listing.photos.append(PhotoFile(rel=rel, path=real, size=int(st.st_size), mtime_ns=int(st.st_mtime_ns)))
    return listing


def open_photo(photo: PhotoFile):
    """The file for reading, or OSError; never follows a link or blocks on a pipe put there
    since the listing."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(photo.path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{ascii(photo.rel)} is no longer a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_header(photo: PhotoFile) -> PhotoMeta:
    try:
        with open_photo(photo) as fh:
            return read_photo_meta(fh)
    except OSError as exc:
        return PhotoMeta(error=f"{UNREADABLE}: {exc.strerror or exc}")


def read_content(photo: PhotoFile) -> bytes:
    """The whole file (OSError when unreadable, ValueError when over MAX_PHOTO_BYTES)."""
    with open_photo(photo) as fh:
        data = fh.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise ValueError(f"file is over {MAX_PHOTO_BYTES // (1024 * 1024)} MiB")
    return data


class Manifest:
    """{relative path: {size, mtime_ns, meta, [sha256, image_id]}} of one tile's pulls."""

    def __init__(self, root: str, entries: dict | None = None) -> None:
        self.root = root
        self.entries: dict[str, dict] = entries or {}

    @classmethod
    def load(cls, path, root: str) -> "Manifest":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(root)
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or data.get("root") != root:
            return cls(root)  # another folder (or format): everything is new to it
        entries = data.get("entries")
        return cls(root, {str(k): v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {})

    def to_bytes(self) -> bytes:
        # ensure_ascii: undecodable names (surrogate escapes) survive the round trip
        return json.dumps({"version": MANIFEST_VERSION, "root": self.root, "entries": self.entries},
                          sort_keys=True, ensure_ascii=True).encode()

    def lookup(self, photo: PhotoFile) -> dict | None:
        entry = self.entries.get(photo.rel)
        if entry and entry.get("size") == photo.size and entry.get("mtime_ns") == photo.mtime_ns:
            return entry
        return None
