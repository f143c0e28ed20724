"""Measure OCR speed, blur coverage and post-blur readability on rendered text images.

    python -m geo_assets.bench.ocr_engines --images 40 --engines rapidocr,easyocr
    python -m geo_assets.bench.ocr_engines --world --seed 0 --images 60 --scales 1.0,3.0

For every image: one OCR pass with the primary engine (its boxes and, for RapidOCR,
its low-threshold regions feed the blur, as in the asset graph), text-region
detection + blur, then every engine reads the original and the blurred image (a
full read: the attacker's view, not the asset's windowed re-read). A word "leaks"
when an engine reads, with confidence >= 0.5, a 3+ character string that matches
a ground-truth text.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from geo_assets.preprocess import blur as blur_mod
from geo_assets.preprocess.ocr import OcrWord, make_ocr_engine
from geo_assets.preprocess.text_cleaning import read_matches
from geo_assets.preprocess.text_images import text_images
from geo_assets.preprocess.variants import ocr_image


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def matching_words(words: list[OcrWord], truths: list[str], *, min_confidence: float = 0.5) -> list[str]:
    """Words read (confidence >= min_confidence, 3+ alphanumerics) that match a true text
    or one of its words (``text_cleaning.read_matches``)."""
    return [text for text, _ in read_matches(words, truths, min_confidence=min_confidence)]


@dataclass
class _Text:
    text: str
    polygon: list


@dataclass
class _Image:
    image_bgr: np.ndarray
    texts: list


def world_images(n: int, world_seed: int = 0) -> list[_Image]:
    """The first ``n`` synthetic-world images that carry text, decoded from their JPEG."""
    import cv2

    from geo_assets.synthetic.world import SyntheticWorld

    world = SyntheticWorld(seed=world_seed)
    out = []
    for image_id in world.ids:
        if len(out) >= n:
            break
        if not world.ground_truth(image_id):
            continue
        rendered = world.render(image_id)
        img = cv2.imdecode(np.frombuffer(rendered.jpeg, np.uint8), cv2.IMREAD_COLOR)
        out.append(_Image(img, [_Text(t.text, [list(p) for p in t.polygon]) for t in rendered.texts]))
    return out


@dataclass
class BenchResult:
    source: str
    images: int
    text_boxes: int
    primary_engine: str
    scales: list[float]
    original_scales: list[float]
    sign_boards: bool
    coverage_share_80: float
    min_coverage: float
    seconds: dict = field(default_factory=dict)
    words_before: dict = field(default_factory=dict)
    words_after: dict = field(default_factory=dict)
    any_words_after: dict = field(default_factory=dict)
    leaked_examples: dict = field(default_factory=dict)


def run_benchmark(n_images: int = 40, *, engines: tuple[str, ...] = ("rapidocr", "easyocr"),
                  scales: tuple[float, ...] = blur_mod.DEFAULT_SCALES,
                  original_scales: tuple[float, ...] = blur_mod.DEFAULT_ORIGINAL_SCALES,
                  sign_boards: bool = blur_mod.DEFAULT_SIGN_BOARDS, start_seed: int = 1000, source: str = "rendered") -> BenchResult:
    """``source``: "rendered" (``text_images`` from ``start_seed``) or "world" (images with
    text from the synthetic world of seed ``start_seed``, JPEG-decoded as the assets see them)."""
    ims = text_images(n_images, start_seed=start_seed) if source == "rendered" else world_images(n_images, start_seed)
    primary = make_ocr_engine(engines[0])
    readers = {name: make_ocr_engine(name) for name in engines}
    for r in readers.values():  # warm-up outside the timings
        r.read(ims[0].image_bgr)
    seconds = {f"ocr_{n}": 0.0 for n in engines} | {"detect": 0.0, "blur": 0.0}
    before = {n: 0 for n in engines}
    after = {n: 0 for n in engines}
    any_after = {n: 0 for n in engines}
    leaked: dict[str, list[str]] = {n: [] for n in engines}
    coverages: list[float] = []
    for ti in ims:
        truths = [t.text for t in ti.texts]
        words: dict[str, list[OcrWord]] = {}
        regions: list = []
        for name, reader in readers.items():
            t0 = time.perf_counter()
            if reader is primary:  # the ocr_text asset's pass: words + the same pass's regions
                ocr_pass = ocr_image(reader, ti.image_bgr)
                words[name], regions = ocr_pass.words, ocr_pass.regions
            else:
                words[name] = reader.read(ti.image_bgr)
            seconds[f"ocr_{name}"] += time.perf_counter() - t0
            before[name] += len(matching_words(words[name], truths))
        t0 = time.perf_counter()
        boxes = blur_mod.detect_text_regions(ti.image_bgr, [primary], [w.box for w in words[engines[0]]] + regions,
                                             scales=scales, original_scales=original_scales, sign_boards=sign_boards)
        t1 = time.perf_counter()
        blurred = blur_mod.blur_regions(ti.image_bgr, boxes)
        t2 = time.perf_counter()
        seconds["detect"] += t1 - t0
        seconds["blur"] += t2 - t1
        coverages += blur_mod.blur_coverage(boxes, [t.polygon for t in ti.texts], ti.image_bgr.shape)
        for name, reader in readers.items():
            read = reader.read(blurred)
            hits = matching_words(read, truths)
            after[name] += len(hits)
            leaked[name] += hits
            any_after[name] += sum(1 for w in read if w.confidence >= 0.5 and len(_norm(w.text)) >= 3)
    cov = np.asarray(coverages)
    return BenchResult(
        source=source, images=len(ims), text_boxes=len(cov), primary_engine=primary.version, scales=list(scales),
        original_scales=list(original_scales), sign_boards=sign_boards,
        coverage_share_80=float((cov >= 0.8).mean()) if len(cov) else 1.0,
        min_coverage=float(cov.min()) if len(cov) else 1.0,
        seconds={k: round(v / len(ims), 4) for k, v in seconds.items()},
        words_before=before, words_after=after, any_words_after=any_after,
        leaked_examples={k: v[:10] for k, v in leaked.items()},
    )


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - CLI
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--engines", default="rapidocr,easyocr")
    ap.add_argument("--scales", default=",".join(str(s) for s in blur_mod.DEFAULT_SCALES))
    ap.add_argument("--original-scales", default=",".join(str(s) for s in blur_mod.DEFAULT_ORIGINAL_SCALES))
    ap.add_argument("--no-sign-boards", action="store_true", help="skip the whole-sign-board fallback")
    ap.add_argument("--seed", type=int, default=1000, help="first image seed, or the world seed with --world")
    ap.add_argument("--world", action="store_true", help="use synthetic-world images instead of rendered ones")
    args = ap.parse_args(argv)
    result = run_benchmark(args.images, engines=tuple(args.engines.split(",")),
                           scales=tuple(float(s) for s in args.scales.split(",") if s),
                           original_scales=tuple(float(s) for s in args.original_scales.split(",") if s),
                           sign_boards=not args.no_sign_boards, start_seed=args.seed, source="world" if args.world else "rendered")
    print(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
