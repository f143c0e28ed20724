"""Real photo sets with labelled words, as the attacker's measurement reads them.

Two layouts, both outside the repository (``../shared/data/real``; never copied in):

- ICDAR 2015 (``icdar2015_train/``): ``images/img_N.jpg`` and ``gt/gt_img_N.txt``, one word a
  line ``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` (UTF-8, may start with a BOM); ``###`` marks
  illegible text. Transcriptions may contain commas, so only the first eight fields are split.
- Street View Text (``svt_train/``): ``train.xml`` with ``<image><imageName>`` and
  ``<taggedRectangle x y width height><tag>WORD</tag>`` per labelled word.

None of these images is in the UK: any UK place the attacker names on them is a false guess.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ENV = "GEO_ASSETS_REAL_DATA"
ILLEGIBLE = "###"


@dataclass(frozen=True)
class RealWord:
    text: str  # the transcription; "" for an illegible box
    legible: bool
    box: tuple[tuple[float, float], ...]  # four (x, y) corners, clockwise from top-left


@dataclass(frozen=True)
class RealImage:
    set_name: str
    name: str  # the image's path relative to the set folder: a stable id
    path: Path
    words: tuple[RealWord, ...] = field(default_factory=tuple)

    def texts(self) -> list[str]:
        """The legible transcriptions, in file order: a 'perfect OCR' reading."""
        return [w.text for w in self.words if w.legible and w.text]


def default_real_dir(repo_root: str | Path | None = None) -> Path:
    """``GEO_ASSETS_REAL_DATA``, else ``<repo>/../shared/data/real`` (it may not exist)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[2]
    return root.parent / "shared" / "data" / "real"


def _icdar_line(line: str, source: Path, lineno: int) -> RealWord:
    parts = line.split(",", 8)
    if len(parts) != 9:
        raise ValueError(f"{source}:{lineno}: expected 8 coordinates and a transcription, got {line!r}")
    try:
        xy = [float(v) for v in parts[:8]]
    except ValueError:
        raise ValueError(f"{source}:{lineno}: coordinates are not numbers: {line!r}") from None
    text = parts[8].strip()
    legible = text != ILLEGIBLE
    return RealWord(text if legible else "", legible, tuple(zip(xy[0::2], xy[1::2])))


def read_icdar(folder: str | Path, set_name: str | None = None) -> list[RealImage]:
    """Every image of an ICDAR 2015 folder with its words, sorted by image number."""
    folder = Path(folder)
    gt_dir, img_dir = folder / "gt", folder / "images"
    if not gt_dir.is_dir() or not img_dir.is_dir():
        raise FileNotFoundError(f"{folder}: not an ICDAR 2015 folder (needs gt/ and images/)")
    out = []
    for gt in gt_dir.glob("gt_img_*.txt"):
        stem = gt.stem[len("gt_"):]
        image = img_dir / f"{stem}.jpg"
        if not image.exists():
            raise FileNotFoundError(f"{gt}: its image {image} is missing")
        lines = gt.read_text(encoding="utf-8-sig").splitlines()
        words = tuple(_icdar_line(line, gt, i) for i, line in enumerate(lines, 1) if line.strip())
        out.append(RealImage(set_name or folder.name, f"images/{image.name}", image, words))
    return sorted(out, key=lambda r: int(r.path.stem.split("_")[-1]))


def read_svt(folder: str | Path, xml_name: str = "train.xml", set_name: str | None = None) -> list[RealImage]:
    """Every image of a Street View Text folder with its labelled words, in file order."""
    folder = Path(folder)
    xml_path = folder / xml_name
    if not xml_path.exists():
        raise FileNotFoundError(f"{folder}: not a Street View Text folder (needs {xml_name})")
    out = []
    for node in ET.parse(xml_path).getroot().iter("image"):
        name = (node.findtext("imageName") or "").strip()
        if not name:
            raise ValueError(f"{xml_path}: an <image> without <imageName>")
        words = []
        for rect in node.iter("taggedRectangle"):
            x, y = float(rect.get("x")), float(rect.get("y"))
            w, h = float(rect.get("width")), float(rect.get("height"))
            text = (rect.findtext("tag") or "").strip()
            words.append(RealWord(text, bool(text), ((x, y), (x + w, y), (x + w, y + h), (x, y + h))))
        out.append(RealImage(set_name or folder.name, name, folder / name, tuple(words)))
    return out


def read_set(folder: str | Path) -> list[RealImage]:
    """A folder in either layout."""
    folder = Path(folder)
    if (folder / "gt").is_dir():
        return read_icdar(folder)
    if (folder / "train.xml").exists():
        return read_svt(folder)
    raise FileNotFoundError(f"{folder}: neither an ICDAR 2015 folder (gt/, images/) nor Street View Text (train.xml)")


TEXT_SETS = ("icdar2015_train", "svt_train")
"""The real sets with labelled words (``lund_exif`` has none)."""


def read_text_sets(real_dir: str | Path) -> dict[str, list[RealImage]]:
    """The labelled sets found under ``real_dir`` (``icdar2015_train``, ``svt_train``)."""
    real_dir = Path(real_dir)
    sets = {name: read_set(real_dir / name) for name in TEXT_SETS if (real_dir / name).is_dir()}
    if not sets:
        raise FileNotFoundError(f"{real_dir}: no labelled real set ({', '.join(TEXT_SETS)})")
    return sets
