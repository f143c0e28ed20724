"""Real photo sets with labelled words, read from the research sets' own files.

The one reader of ``../shared/data/real`` (``real_data_dir()``; see its README.md) for the
blur benchmark (``bench/blur_real.py``), the attacker's false-guess measurement
(``attack/false_guesses.py``, ``attack/ocr_cache.py``) and the tests. Two formats, as their
authors ship them:

- ICDAR 2015 Incidental Scene Text (``icdar2015_train/``): ``images/img_N.jpg`` with
  ``gt/gt_img_N.txt``, one word a line, ``x1,y1,x2,y2,x3,y3,x4,y4,transcription``
  clockwise from top-left (UTF-8, may start with a BOM; the transcription may itself hold
  commas, so only the first eight fields are split); ``###`` marks illegible text.
- Street View Text (``svt_train/``): ``train.xml`` (or ``test.xml``) listing ``<image>``
  elements with ``<imageName>`` and ``<taggedRectangle x y width height><tag>WORD</tag>``;
  only business-name words are labelled.

The images are never copied: loaders return paths and polygons, and callers decode.
None of these images is in the UK: any UK place the attacker names on them is a false guess.

One behaviour for both formats:

- a malformed label (a line that is not eight numbers and a transcription, a rectangle
  whose coordinates are not numbers, XML that does not parse) raises ``RealSetError``,
  naming the file (and line): a box is never silently dropped from a measurement;
- a label whose image is not a file inside the set folder (missing, an SVT name such as
  ``../x.jpg`` that leaves the folder, or no name at all) is not read: the image is left
  out and a ``RealSetWarning`` names it;
- an image without labels (an ICDAR image with no ``gt/`` file) is not part of the set;
- a folder in neither format raises ``RealSetError``.
"""

from __future__ import annotations

import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REAL_DATA_ENV = "GEO_ASSETS_REAL_DATA"
ILLEGIBLE = "###"
TEXT_SETS = ("icdar2015_train", "svt_train")
"""The real sets with labelled words (``lund_exif`` has none)."""


class RealSetError(ValueError):
    """A folder or label file that is not a readable ICDAR 2015 or SVT set."""


class RealSetWarning(UserWarning):
    """A labelled image that was left out (missing, or outside the set folder)."""


@dataclass(frozen=True)
class RealWord:
    polygon: tuple[tuple[float, float], ...]
    """Four (x, y) corners in pixels of the image, clockwise from top-left."""
    text: str
    """The transcription; "" for an illegible box."""
    legible: bool


@dataclass(frozen=True)
class RealImage:
    set_name: str
    """The set folder's name (e.g. ``icdar2015_train``)."""
    name: str
    """The image's path relative to the set folder (POSIX): a stable id (OCR caches key on it)."""
    path: Path
    words: tuple[RealWord, ...] = field(default_factory=tuple)

    @property
    def legible(self) -> list[RealWord]:
        return [w for w in self.words if w.legible]

    def texts(self) -> list[str]:
        """The legible transcriptions, in file order: a 'perfect OCR' reading."""
        return [w.text for w in self.words if w.legible and w.text]


def real_data_dir() -> Path:
    """``GEO_ASSETS_REAL_DATA``, else ``<repo>/../shared/data/real`` (where the team's checkout
    and CI keep it). It may not exist: callers skip or fail clearly."""
    env = os.environ.get(REAL_DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


def _left_out(source: Path, name: str, why: str) -> None:
    warnings.warn(f"{source}: image {name!r} {why}; it is not read", RealSetWarning, stacklevel=3)


# ---------------------------------------------------------------------------- ICDAR 2015


def parse_icdar_line(line: str, source: str | Path | None = None, lineno: int | None = None) -> RealWord | None:
    """One ICDAR 2015 ground-truth line; None for a blank line. Raises RealSetError (naming
    ``source:lineno`` when given) on a line that is not eight numbers and a transcription."""
    where = f"{source}:{lineno}: " if source is not None and lineno is not None else f"{source}: " if source else ""
    line = line.strip().lstrip("\ufeff")
    if not line:
        return None
    parts = line.split(",", 8)
    if len(parts) != 9:
        raise RealSetError(f"{where}expected 8 coordinates and a transcription, got {line[:80]!r}")
    try:
        xy = [float(v) for v in parts[:8]]
    except ValueError:
        raise RealSetError(f"{where}non-numeric coordinate, the first 8 fields are not numbers: {line[:80]!r}") from None
    text = parts[8].strip()
    legible = text != ILLEGIBLE
    return RealWord(tuple(zip(xy[0::2], xy[1::2])), text if legible else "", legible)


def _image_number(path: Path) -> int:
    m = re.search(r"(\d+)", path.stem)
    return int(m.group(1)) if m else -1


def load_icdar2015(folder: str | Path, set_name: str | None = None) -> list[RealImage]:
    """Every image of an ICDAR 2015 folder (``images/`` + ``gt/``) that has a ground-truth
    file, in image-number order."""
    folder = Path(folder)
    images_dir, gt_dir = folder / "images", folder / "gt"
    if not images_dir.is_dir() or not gt_dir.is_dir():
        raise RealSetError(f"{folder} is not an ICDAR 2015 folder (needs images/ and gt/)")
    out = []
    for gt in gt_dir.glob("gt_*.txt"):
        image = images_dir / f"{gt.stem[len('gt_'):]}.jpg"
        name = f"images/{image.name}"
        if not image.is_file():
            _left_out(gt, name, "is missing")
            continue
        words = []
        for i, line in enumerate(gt.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
            word = parse_icdar_line(line, gt, i)
            if word is not None:
                words.append(word)
        out.append(RealImage(set_name or folder.name, name, image, tuple(words)))
    return sorted(out, key=lambda r: (_image_number(r.path), r.name))


# ---------------------------------------------------------------------------- Street View Text


def load_svt(folder: str | Path, xml_name: str = "train.xml", set_name: str | None = None) -> list[RealImage]:
    """The images listed in an SVT folder's XML with their labelled words, in file order."""
    folder = Path(folder)
    xml_path = folder / xml_name
    if not xml_path.is_file():
        raise RealSetError(f"{folder} is not an SVT folder (no {xml_name})")
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise RealSetError(f"{xml_path}: {exc}") from exc
    root = folder.resolve()
    out = []
    for n, node in enumerate(tree.getroot().iter("image"), 1):
        name = (node.findtext("imageName") or "").strip()
        path = (folder / name).resolve()
        if not name:
            _left_out(xml_path, f"<image> {n}", "has no <imageName>")
            continue
        if root not in path.parents:
            _left_out(xml_path, name, "leaves the set folder")
            continue
        if not path.is_file():
            _left_out(xml_path, name, "is missing")
            continue
        words = []
        for rect in node.iter("taggedRectangle"):
            try:
                x, y = float(rect.get("x")), float(rect.get("y"))
                w, h = float(rect.get("width")), float(rect.get("height"))
            except (TypeError, ValueError):
                attrs = {k: rect.get(k) for k in ("x", "y", "width", "height")}
                raise RealSetError(f"{xml_path}: {name}: a <taggedRectangle> whose coordinates are not numbers: "
                                   f"{attrs}") from None
            text = (rect.findtext("tag") or "").strip()
            words.append(RealWord(((x, y), (x + w, y), (x + w, y + h), (x, y + h)), text, bool(text)))
        out.append(RealImage(set_name or folder.name, path.relative_to(root).as_posix(), path, tuple(words)))
    return out


# ---------------------------------------------------------------------------- either format


def load_real_set(folder: str | Path) -> tuple[str, list[RealImage]]:
    """(format, images) of a folder in either format: ``"icdar2015"`` or ``"svt"``."""
    folder = Path(folder)
    if (folder / "gt").is_dir() and (folder / "images").is_dir():
        return "icdar2015", load_icdar2015(folder)
    for xml_name in ("train.xml", "test.xml"):
        if (folder / xml_name).is_file():
            return "svt", load_svt(folder, xml_name)
    if (folder / "gt").is_dir() or (folder / "images").is_dir():
        return "icdar2015", load_icdar2015(folder)  # raises: names the missing half
    raise RealSetError(f"{folder}: neither an ICDAR 2015 folder (images/, gt/) nor an SVT folder (train.xml)")


def load_text_sets(real_dir: str | Path | None = None) -> dict[str, list[RealImage]]:
    """The labelled sets found under ``real_dir`` (default ``real_data_dir()``):
    ``icdar2015_train``, ``svt_train``."""
    real_dir = Path(real_dir) if real_dir is not None else real_data_dir()
    sets = {name: load_real_set(real_dir / name)[1] for name in TEXT_SETS if (real_dir / name).is_dir()}
    if not sets:
        raise RealSetError(f"{real_dir}: no labelled real set ({', '.join(TEXT_SETS)}; set {REAL_DATA_ENV})")
    return sets
