"""Sidecar files that give photos a position, time and sequence without touching the photos.

- `mapillary_image_description.json` (what `mapillary_tools process` writes next to the
  images): a JSON list of objects with `filename` (absolute when written, so a moved export
  is matched by its name in the file's folder), `MAPLatitude`, `MAPLongitude`,
  `MAPCaptureTime` ("2021_03_04_10_11_12_000", UTC), `MAPSequenceUUID`; entries with an
  `error` (images mapillary_tools refused) are skipped.
- any `*.csv` whose header has `file`, `lat`, `lon` (and optionally `captured_at`, ISO 8601
  or epoch ms or the MAP format, and `sequence_id`); `file` is relative to the CSV's folder.

Each returns {relative POSIX path in the folder: fields}; a sidecar never names a file
outside the folder (such rows are dropped), and a broken sidecar is a warning, not an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from geo_assets.folder.metadata import clean_sequence_id, fields_from_description, parse_time

DESCRIPTION_FILE = "mapillary_image_description.json"
CSV_COLUMNS = ("file", "lat", "lon")
MAX_SIDECAR_BYTES = 64 * 1024 * 1024


def relative_in_folder(name: str, base_dir: Path, root: Path) -> str | None:
    """`name` (as a sidecar wrote it) as a POSIX path relative to `root`, or None when it
    does not point inside `root`. Purely lexical: the scan decides what exists."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        return None
    p = Path(name.strip().replace("\\", "/"))
    candidates = [p, base_dir / p.name] if p.is_absolute() else [base_dir / p]
    root_s = os.path.normpath(str(root))
    for c in candidates:
        norm = os.path.normpath(str(c))
        if os.path.commonpath([root_s, norm]) == root_s and norm != root_s:
            return Path(os.path.relpath(norm, root_s)).as_posix()
    return None


def _read_text(path: Path) -> str:
    with open(path, "rb") as fh:
        data = fh.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise ValueError(f"over {MAX_SIDECAR_BYTES // (1024 * 1024)} MiB")
    return data.decode("utf-8-sig")


def read_description_file(path: Path, root: Path) -> tuple[dict[str, dict], list[str]]:
    try:
        data = json.loads(_read_text(path))
    except (OSError, ValueError) as exc:
        return {}, [f"{_name(path, root)}: not readable as mapillary_tools JSON ({exc})"]
    if not isinstance(data, list):
        return {}, [f"{_name(path, root)}: expected a JSON list of image descriptions"]
    out: dict[str, dict] = {}
    dropped = 0
    for entry in data:
        if not isinstance(entry, dict) or "error" in entry or entry.get("filetype", "image") != "image":
            continue
        rel = relative_in_folder(entry.get("filename"), path.parent, root)
        if rel is None:
            dropped += 1
            continue
        fields = fields_from_description(entry, "description")
        if fields:
            out[rel] = fields
    warnings = [f"{_name(path, root)}: {dropped} entries name no file inside the folder"] if dropped else []
    return out, warnings


def read_csv_sidecar(path: Path, root: Path) -> tuple[dict[str, dict], list[str]] | None:
    """The CSV's rows, or None when its header is not a sidecar's (any other CSV is ignored)."""
    try:
        text = _read_text(path)
    except (OSError, ValueError) as exc:
        return {}, [f"{_name(path, root)}: not readable ({exc})"]
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not all(c in header for c in CSV_COLUMNS):
        return None
    reader.fieldnames = header
    out: dict[str, dict] = {}
    dropped = 0
    for row in reader:
        rel = relative_in_folder(row.get("file") or "", path.parent, root)
        if rel is None:
            dropped += 1
            continue
        fields: dict = {"position_from": "csv"}
        try:
            fields["lat"], fields["lon"] = float(row.get("lat") or "nan"), float(row.get("lon") or "nan")
        except ValueError:
            fields["lat"] = fields["lon"] = float("nan")  # a garbled position is bad_coordinates later
        t = parse_time((row.get("captured_at") or "").strip() or None)
        if t is not None:
            fields.update(captured_at=t, time_from="csv")
        seq = clean_sequence_id(row.get("sequence_id"))
        if seq:
            fields["sequence_id"] = seq
        out[rel] = fields
    warnings = [f"{_name(path, root)}: {dropped} rows name no file inside the folder"] if dropped else []
    return out, warnings


def _name(path: Path, root: Path) -> str:
    try:
        return ascii(Path(path).relative_to(root).as_posix())
    except ValueError:
        return ascii(Path(path).name)


def read_sidecars(paths: list[Path], root: Path) -> tuple[dict[str, dict], list[str]]:
    """Every sidecar's fields merged (CSV over description files, then by path order)."""
    described: dict[str, dict] = {}
    listed: dict[str, dict] = {}
    warnings: list[str] = []
    for path in sorted(paths):
        if path.name == DESCRIPTION_FILE:
            entries, warn = read_description_file(path, root)
            described.update(entries)
        else:
            got = read_csv_sidecar(path, root)
            if got is None:
                continue
            entries, warn = got
            listed.update(entries)
        warnings.extend(warn)
    merged = {rel: dict(fields) for rel, fields in described.items()}
    for rel, fields in listed.items():
        merged.setdefault(rel, {}).update(fields)
    return merged, warnings
