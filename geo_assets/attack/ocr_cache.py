"""OCR reads of the real photo sets, read once and kept as Parquet.

Reading 1,090 real images takes minutes per engine on a small CPU; the attacker's
rules are tuned and measured many times over the same reads. One file per
(set, engine): ``<cache>/<set>_<engine>.parquet``, one row per image with the
words, their confidences and their boxes (8 floats, clockwise from top-left),
and the engine's version string, so a read by another engine version is redone.

    python -m geo_assets.attack.ocr_cache --real ../shared/data/real --cache DIR --engine rapidocr
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import pyarrow as pa

from geo_assets.data.real_sets import RealImage, RealSetError, load_text_sets
from geo_assets.preprocess.ocr import OcrWord
from geo_assets.store.parquet import read_table, write_table

SCHEMA = pa.schema([
    ("image", pa.string()),
    ("engine_version", pa.string()),
    ("texts", pa.list_(pa.string())),
    ("confidences", pa.list_(pa.float64())),
    ("boxes", pa.list_(pa.list_(pa.float64()))),
])

FLUSH_EVERY = 10  # images between rewrites: a killed run keeps most of its reads


def cache_path(cache_dir: str | Path, set_name: str, engine: str) -> Path:
    return Path(cache_dir) / f"{set_name}_{engine}.parquet"


def load_reads(path: str | Path, engine_version: str | None = None) -> dict[str, list[OcrWord]]:
    """image name -> words, from one cache file (only rows of ``engine_version`` when given)."""
    path = Path(path)
    if not path.exists():
        return {}
    out = {}
    for row in read_table(path, SCHEMA).to_pylist():
        if engine_version is not None and row["engine_version"] != engine_version:
            continue
        out[row["image"]] = [OcrWord(t, c, [[b[i], b[i + 1]] for i in range(0, 8, 2)])
                             for t, c, b in zip(row["texts"], row["confidences"], row["boxes"])]
    return out


def _row(image: str, version: str, words: Sequence[OcrWord]) -> dict:
    return {"image": image, "engine_version": version, "texts": [w.text for w in words],
            "confidences": [float(w.confidence) for w in words],
            "boxes": [[float(v) for p in w.box for v in p] for w in words]}


def _write(path: Path, version: str, reads: dict[str, list[OcrWord]]) -> None:
    rows = [_row(name, version, words) for name, words in sorted(reads.items())]
    write_table(path, pa.Table.from_pylist(rows, schema=SCHEMA))


def fill_cache(images: Sequence[RealImage], engine, path: str | Path, *, log=print) -> dict[str, list[OcrWord]]:
    """Every real image's read by ``engine``: cached ones loaded, missing ones read and written."""
    import cv2

    def load(image: RealImage):
        bgr = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{image.path}: not a readable image")
        return bgr

    return fill_reads([(r.name, functools.partial(load, r)) for r in images], engine, path, log=log)


def fill_reads(items: Sequence[tuple[str, Callable[[], "np.ndarray"]]], engine, path: str | Path, *,
               log=print) -> dict[str, list[OcrWord]]:
    """(name, image loader) items read by ``engine``, through the cache file ``path``."""
    path = Path(path)
    reads = load_reads(path, engine.version)
    todo = [(name, loader) for name, loader in items if name not in reads]
    started = time.perf_counter()
    for k, (name, loader) in enumerate(todo, 1):
        reads[name] = engine.read(loader())
        if k % FLUSH_EVERY == 0 or k == len(todo):
            _write(path, engine.version, reads)
            log(f"{path.name}: {k}/{len(todo)} read ({(time.perf_counter() - started) / k:.2f} s/image)")
    return {name: reads[name] for name, _ in items}


def main(argv: list[str] | None = None) -> None:
    from geo_assets.preprocess.ocr import make_ocr_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=None, help="folder holding icdar2015_train/ and svt_train/ (default: real_data_dir())")
    parser.add_argument("--cache", type=Path, required=True, help="folder for <set>_<engine>.parquet")
    parser.add_argument("--engine", action="append", choices=("rapidocr", "easyocr"), required=True)
    parser.add_argument("--set", action="append", default=None, help="only these sets (default: every labelled set)")
    args = parser.parse_args(argv)
    try:
        sets = load_text_sets(args.real)
    except RealSetError as exc:
        parser.error(str(exc))
    if args.set:
        unknown = set(args.set) - set(sets)
        if unknown:
            parser.error(f"no such set: {', '.join(sorted(unknown))}; found {', '.join(sets)}")
        sets = {k: v for k, v in sets.items() if k in args.set}
    args.cache.mkdir(parents=True, exist_ok=True)
    for name in args.engine:
        engine = make_ocr_engine(name, "cpu")
        for set_name, images in sets.items():
            reads = fill_cache(images, engine, cache_path(args.cache, set_name, name),
                               log=lambda m: print(m, file=sys.stderr, flush=True))
            print(f"{set_name} {name}: {len(reads)} images, {sum(map(len, reads.values()))} words")


if __name__ == "__main__":  # pragma: no cover
    main()
