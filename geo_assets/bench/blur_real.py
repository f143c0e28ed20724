"""`geo-assets bench blur-real DIR`: the blur measured on real photos with ground-truth words.

    geo-assets bench blur-real ../shared/data/real/icdar2015_train
    geo-assets bench blur-real ../shared/data/real/svt_train --engines rapidocr --limit 50

Each image goes through what the graph does to it: the ``ocr_text`` pass of the primary
engine (its words and low-threshold regions), then ``make_blurred_variant`` with the
``blurred_images`` asset's default configuration (regions, blur, windowed re-read), timed
as the *blur path*. Then:

- coverage: the share of legible and of all ground-truth boxes at least 80% blurred;
- area: the share of the image blurred;
- readability: every engine reads the original and the blurred image in full (the
  attacker's view) and we count the legible ground-truth words it read before blurring
  and still reads after (a word is read when a 3+ character token with confidence >= 0.5
  matches it, as in ``bench.ocr_engines``).

The set's images are read where they are and never copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geo_assets.bench.meter import loadavg, machine_info, now
from geo_assets.data.real_sets import RealImage, RealSetError, load_real_set
from geo_assets.bench.tables import format_table
from geo_assets.preprocess.text_cleaning import read_matches

COVERED = 0.8
"""A ground-truth box counts as blurred when at least this share of it is."""
MIN_CONFIDENCE = 0.5
MIN_CHARS = 3


def words_read(read: list, truths: list[str]) -> set[int]:
    """Indices of the ground-truth words that a read says (``text_cleaning.read_matches``)."""
    return set().union(*(hit for _, hit in read_matches(read, truths, min_confidence=MIN_CONFIDENCE, min_chars=MIN_CHARS)))


@dataclass
class BlurRealResult:
    set_name: str
    images: int
    legible_boxes: int
    all_boxes: int
    legible_covered: float
    all_covered: float
    area_blurred: float
    seconds_ocr_pass: float
    seconds_blur_path: float
    config: dict
    words_before: dict = field(default_factory=dict)
    words_after: dict = field(default_factory=dict)
    leaked_examples: dict = field(default_factory=dict)
    missed_examples: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sample_images(images: list[RealImage], *, limit: int | None = None, every: int = 1, offset: int = 0) -> list[RealImage]:
    """Every ``every``-th image from ``offset``, at most ``limit``: a fixed, spread sample."""
    if every < 1 or offset < 0:
        raise ValueError("every must be >= 1 and offset >= 0")
    chosen = images[offset::every]
    return chosen[:limit] if limit else chosen


def bench_blur_real(images: list[RealImage], *, set_name: str, engines: tuple[str, ...] = ("rapidocr", "easyocr"),
                    blur_options: dict | None = None, echo=print) -> BlurRealResult:
    """Blur ``images`` as the graph does and measure coverage, area, time and re-reads."""
    import cv2

    from geo_assets.defs.assets.preprocess import BlurConfig
    from geo_assets.preprocess import blur as blur_mod
    from geo_assets.preprocess.ocr import make_ocr_engine
    from geo_assets.preprocess.variants import make_blurred_variant, ocr_image

    if not images:
        raise ValueError(f"{set_name}: no images to measure")
    config = BlurConfig(**(blur_options or {}))
    kwargs = config.variant_kwargs()
    primary = make_ocr_engine(engines[0])
    readers = {name: (primary if name == engines[0] else make_ocr_engine(name)) for name in engines}
    first = cv2.imread(str(images[0].path), cv2.IMREAD_COLOR)
    for reader in readers.values():  # model warm-up outside the timings
        reader.read(first)
    t_ocr = t_blur = 0.0
    legible_cov: list[float] = []
    all_cov: list[float] = []
    areas: list[float] = []
    before = {n: 0 for n in engines}
    after = {n: 0 for n in engines}
    leaked: dict[str, list[str]] = {n: [] for n in engines}
    missed: list[dict] = []
    for n, image in enumerate(images, 1):
        img = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
        if img is None:
            raise RealSetError(f"cannot decode {image.path}")
        t0 = time.perf_counter()
        ocr_pass = ocr_image(primary, img)
        t1 = time.perf_counter()
        variant = make_blurred_variant(img, primary, ocr_pass.words, regions=ocr_pass.regions, **kwargs)
        t2 = time.perf_counter()
        t_ocr += t1 - t0
        t_blur += t2 - t1
        mask = blur_mod.blur_mask(variant.boxes, img.shape, padding_frac=config.padding_frac, padding_px=config.padding_px)
        areas.append(float(mask.mean()))
        coverage = blur_mod.blur_coverage(mask, [w.polygon for w in image.words], img.shape)
        for word, cov in zip(image.words, coverage):
            all_cov.append(cov)
            if word.legible:
                legible_cov.append(cov)
                if cov < COVERED and len(missed) < 40:
                    missed.append({"image": image.path.name, "text": word.text, "covered": round(cov, 3)})
        truths = [w.text for w in image.legible]
        for name, reader in readers.items():
            read_before = ocr_pass.words if reader is primary else reader.read(img)
            seen = words_read(read_before, truths)
            still = seen & words_read(reader.read(variant.image_bgr), truths)
            before[name] += len(seen)
            after[name] += len(still)
            leaked[name] += [f"{image.path.name}:{truths[i]}" for i in sorted(still)]
        if n % 25 == 0 or n == len(images):
            echo(f"  {set_name}: {n}/{len(images)} images, legible covered {np.mean(np.array(legible_cov) >= COVERED):.1%}, "
                 f"blur path {t_blur / n:.3f} s/image")
    legible = np.asarray(legible_cov)
    every = np.asarray(all_cov)
    return BlurRealResult(
        set_name=set_name, images=len(images), legible_boxes=int(legible.size), all_boxes=int(every.size),
        legible_covered=float((legible >= COVERED).mean()) if legible.size else 1.0,
        all_covered=float((every >= COVERED).mean()) if every.size else 1.0,
        area_blurred=float(np.mean(areas)), seconds_ocr_pass=t_ocr / len(images), seconds_blur_path=t_blur / len(images),
        config={"blur_version": config.blur_version(), "primary_engine": primary.version, **kwargs},
        words_before=before, words_after=after, leaked_examples={k: v[:20] for k, v in leaked.items()},
        missed_examples=missed,
    )


def write_icdar_set(folder: Path, images: list) -> Path:
    """Images with known text (``bench.ocr_engines._Image``: the synthetic world's or rendered
    ones) written as an ICDAR 2015 folder, every text legible, so the synthetic world is
    measured by the same code as the real sets."""
    import cv2

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(exist_ok=True)
    for i, item in enumerate(images, 1):
        cv2.imwrite(str(folder / "images" / f"img_{i}.jpg"), item.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
        lines = [",".join(f"{v:.1f}" for point in t.polygon for v in point) + "," + t.text.replace("\n", " ")
                 for t in item.texts]
        (folder / "gt" / f"gt_img_{i}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def result_table(results: list[BlurRealResult]) -> str:
    engines = list(results[0].words_before) if results else []
    headers = ["set", "images", "legible >= 80%", "all >= 80%", "area blurred", "blur path s/img", "OCR pass s/img",
               *(f"{e} legible words before -> after" for e in engines)]
    rows = [[r.set_name, r.images, f"{r.legible_covered:.1%} of {r.legible_boxes}", f"{r.all_covered:.1%} of {r.all_boxes}",
             f"{r.area_blurred:.1%}", f"{r.seconds_blur_path:.3f}", f"{r.seconds_ocr_pass:.3f}",
             *(f"{r.words_before[e]} -> {r.words_after[e]}" for e in engines)] for r in results]
    return format_table(headers, rows, "lrrrrrr" + "r" * len(engines))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geo-assets bench blur-real",
                                description="Blur coverage, re-reads, area and time on real photos with word boxes "
                                            "(ICDAR 2015 text files or SVT XML).")
    p.add_argument("dirs", nargs="*", metavar="DIR", help="ICDAR 2015 folders (images/, gt/) or SVT folders (train.xml)")
    p.add_argument("--world", type=int, default=0, metavar="N",
                   help="also measure the first N synthetic-world images with text (seed 0), the same way")
    p.add_argument("--engines", default="rapidocr,easyocr",
                   help="OCR engines, the first is the graph's primary (default rapidocr,easyocr)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images per set")
    p.add_argument("--every", type=int, default=1, help="every K-th image (default 1: all)")
    p.add_argument("--offset", type=int, default=0, help="first image index for --every (default 0)")
    p.add_argument("--scales", default=None,
                   help="blur detection passes on the contrast-normalised image, e.g. 1.0,1.5 (default: the asset's)")
    p.add_argument("--padding-frac", type=float, default=None, help="padding per side, x text height (default: the asset's)")
    p.add_argument("--padding-px", type=int, default=None, help="padding per side in pixels (default: the asset's)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/blur-real-<timestamp>.json)")
    return p


def parse_blur_options(args: argparse.Namespace) -> dict:
    """The BlurConfig fields the options override (none: the blurred_images asset's defaults)."""
    options: dict = {}
    if args.scales is not None:
        try:
            options["scales"] = [float(v) for v in args.scales.split(",") if v.strip()]
        except ValueError as exc:
            raise ValueError(f"--scales must be numbers separated by commas, got {args.scales!r}") from exc
        if any(not 0.25 <= v <= 4 for v in options["scales"]):
            raise ValueError(f"--scales must lie in [0.25, 4], got {args.scales!r}")
    if args.padding_frac is not None:
        if not 0 <= args.padding_frac <= 2:
            raise ValueError("--padding-frac must lie in [0, 2]")
        options["padding_frac"] = args.padding_frac
    if args.padding_px is not None:
        if not 0 <= args.padding_px <= 64:
            raise ValueError("--padding-px must lie in [0, 64]")
        options["padding_px"] = args.padding_px
    return options


def _echo(line: str) -> None:
    print(line, flush=True)  # progress shows as it happens, also into a file


def main(argv: list[str] | None = None) -> int:
    import datetime as _dt

    from geo_assets.config.settings import PROJECT_ROOT

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.every < 1 or args.offset < 0 or (args.limit is not None and args.limit < 1):
        parser.error("--every and --limit must be >= 1, --offset >= 0")
    engines = tuple(e.strip() for e in args.engines.split(",") if e.strip())
    if not engines or any(e not in ("rapidocr", "easyocr") for e in engines):
        parser.error(f"--engines must name rapidocr and/or easyocr, got {args.engines!r}")
    try:
        options = parse_blur_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.dirs and args.world < 1:
        parser.error("name at least one DIR, or --world N")
    started = time.time()
    load_start = loadavg()
    results = []
    for folder in args.dirs:
        path = Path(folder)
        try:
            _, images = load_real_set(path)
        except RealSetError as exc:
            parser.error(str(exc))
        images = sample_images(images, limit=args.limit, every=args.every, offset=args.offset)
        print(f"{path.name}: {len(images)} images")
        results.append(bench_blur_real(images, set_name=path.name, engines=engines, blur_options=options, echo=_echo))
    if args.world > 0:
        import tempfile

        from geo_assets.bench.ocr_engines import world_images

        with tempfile.TemporaryDirectory(prefix="blur-real-world-") as tmp:
            _, images = load_real_set(write_icdar_set(Path(tmp) / "synthetic_world", world_images(args.world, 0)))
            print(f"synthetic_world: {len(images)} images")
            results.append(bench_blur_real(images, set_name="synthetic_world", engines=engines, blur_options=options,
                                           echo=_echo))
    report = {
        "when": now(), "machine": machine_info(), "loadavg_start": load_start, "loadavg_end": loadavg(),
        "seconds": round(time.time() - started, 1), "sample": {"limit": args.limit, "every": args.every, "offset": args.offset},
        "results": [r.to_dict() for r in results],
    }
    out = Path(args.out) if args.out else (
        PROJECT_ROOT / "benchmarks" / "results" / f"blur-real-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print()
    print(result_table(results))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
