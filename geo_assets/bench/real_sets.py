"""Real photos with ground-truth word boxes, read from the research sets' own files.

Two formats, as their authors ship them (``../shared/data/real/README.md``):

- ICDAR 2015 Incidental Scene Text: ``images/img_N.jpg`` with ``gt/gt_img_N.txt``, one
  word a line, ``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` clockwise from top-left
  (UTF-8, may start with a BOM; the transcription may itself hold commas); ``###``
  marks illegible text.
- Street View Text: ``train.xml`` (or ``test.xml``) listing ``<image>`` elements with
  ``<imageName>`` and ``<taggedRectangle x y width height><tag>WORD</tag>``; only
  business-name words are labelled, so every labelled word is legible.

The images are never copied: loaders return paths and polygons, and callers decode.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ILLEGIBLE = "###"


@dataclass(frozen=True)
class GroundTruthWord:
    polygon: tuple[tuple[float, float], ...]
    """Four (x, y) corners in pixels of the image."""
    text: str
    legible: bool


@dataclass(frozen=True)
class RealImage:
    path: Path
    words: tuple[GroundTruthWord, ...]

    @property
    def legible(self) -> list[GroundTruthWord]:
        return [w for w in self.words if w.legible]


class RealSetError(ValueError):
    """A folder that is not a readable ICDAR 2015 or SVT set."""


def parse_icdar_line(line: str) -> GroundTruthWord | None:
    """One ICDAR 2015 ground-truth line; None for a blank line. Raises RealSetError
    on a line that is not eight numbers and a transcription."""
    line = line.strip().lstrip("\ufeff")
    if not line:
        return None
    parts = line.split(",", 8)
    if len(parts) != 9:
        raise RealSetError(f"expected 8 coordinates and a transcription, got {line[:80]!r}")
    try:
        coords = [float(v) for v in parts[:8]]
    except ValueError as exc:
        raise RealSetError(f"non-numeric coordinate in {line[:80]!r}") from exc
    text = parts[8]
    polygon = tuple((coords[i], coords[i + 1]) for i in range(0, 8, 2))
    return GroundTruthWord(polygon, text, text.strip() != ILLEGIBLE)


def _image_number(path: Path) -> int:
    m = re.search(r"(\d+)", path.stem)
    return int(m.group(1)) if m else -1


def load_icdar2015(root: Path) -> list[RealImage]:
    """Every image of an ICDAR 2015 folder (``images/`` + ``gt/``) that has a ground-truth
    file, in image-number order."""
    root = Path(root)
    images_dir, gt_dir = root / "images", root / "gt"
    if not images_dir.is_dir() or not gt_dir.is_dir():
        raise RealSetError(f"{root} is not an ICDAR 2015 folder (needs images/ and gt/)")
    out = []
    for image in sorted(images_dir.glob("*.jpg"), key=_image_number):
        gt = gt_dir / f"gt_{image.stem}.txt"
        if not gt.is_file():
            continue
        words = []
        for line in gt.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            word = parse_icdar_line(line)
            if word is not None:
                words.append(word)
        out.append(RealImage(image, tuple(words)))
    return out


def load_svt(root: Path, xml_name: str = "train.xml") -> list[RealImage]:
    """The images listed in an SVT folder's XML, with their labelled words (all legible)."""
    root = Path(root)
    xml_path = root / xml_name
    if not xml_path.is_file():
        raise RealSetError(f"{root} is not an SVT folder (no {xml_name})")
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise RealSetError(f"{xml_path}: {exc}") from exc
    out = []
    resolved_root = root.resolve()
    for image in tree.getroot().iter("image"):
        name = (image.findtext("imageName") or "").strip()
        path = (root / name).resolve()
        if not name or resolved_root not in path.parents or not path.is_file():
            continue  # a name that leaves the folder or a missing file is not read
        words = []
        for rect in image.iter("taggedRectangle"):
            try:
                x, y = float(rect.get("x")), float(rect.get("y"))
                w, h = float(rect.get("width")), float(rect.get("height"))
            except (TypeError, ValueError):
                continue
            polygon = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
            words.append(GroundTruthWord(polygon, (rect.findtext("tag") or "").strip(), True))
        out.append(RealImage(path, tuple(words)))
    return out


def load_real_set(root: Path) -> tuple[str, list[RealImage]]:
    """(format, images) of a folder in either format."""
    root = Path(root)
    if (root / "gt").is_dir() and (root / "images").is_dir():
        return "icdar2015", load_icdar2015(root)
    for xml_name in ("train.xml", "test.xml"):
        if (root / xml_name).is_file():
            return "svt", load_svt(root, xml_name)
    raise RealSetError(f"{root}: neither an ICDAR 2015 folder (images/, gt/) nor an SVT folder (train.xml)")


def real_data_dir() -> Path:
    """``GEO_ASSETS_REAL_DATA``, else ``shared/data/real`` beside the repository (where the
    team's checkout and CI keep it). May not exist: callers skip or fail clearly."""
    from geo_assets.settings import PROJECT_ROOT

    env = os.environ.get("GEO_ASSETS_REAL_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data" / "real"
