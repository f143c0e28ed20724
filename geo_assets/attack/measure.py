"""Measure the gazetteer attacker's rules on the synthetic world (how ``DEFAULT_RULE`` was chosen).

    python -m geo_assets.attack.measure                 # ground-truth texts of every image with text
    python -m geo_assets.attack.measure --ocr 120       # RapidOCR reads of 120 rendered images, unblurred and blurred

Ground truth is the text the renderer drew (``SyntheticWorld.ground_truth``): the
attacker's ceiling. The OCR mode renders images with signs or dashcam overlays,
reads them with RapidOCR, blurs them as the ``blurred_images`` asset does and
reads the blurred copy. Percentages are of all images measured (an abstention
counts as a miss).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Iterable

from geo_assets.attack.gazetteer import RULES, locate
from geo_assets.geo.haversine import haversine_km

CONFIGS: list[tuple[str, dict]] = [(rule, {"rule": rule}) for rule in RULES] + [
    ("unmarked_least_populous, no shared-name resolution", {"rule": "unmarked_least_populous", "disambiguate": False}),
    ("unmarked_least_populous, no fuzzy match", {"rule": "unmarked_least_populous", "fuzzy": False}),
]


def score(samples: list[tuple[float, float, list[str]]], **kwargs) -> dict:
    """Coverage and share within 1/10/25 km of (true lat, true lon, texts) samples."""
    n = len(samples)
    out = {"images": n, "guessed": 0, "within_1km": 0, "within_10km": 0, "within_25km": 0, "coordinates": 0}
    for lat, lon, texts in samples:
        guess = locate(texts, **kwargs)
        if guess is None:
            continue
        out["guessed"] += 1
        out["coordinates"] += guess.source == "coordinates"
        km = float(haversine_km(lat, lon, guess.lat, guess.lon))
        for limit in (1, 10, 25):
            out[f"within_{limit}km"] += km <= limit
    return out


def table(samples: list[tuple[float, float, list[str]]], configs: Iterable[tuple[str, dict]] = CONFIGS) -> str:
    lines = ["| rule | images | coverage % | <=1 km % | <=10 km % | <=25 km % |", "|---|---|---|---|---|---|"]
    for label, kwargs in configs:
        s = score(samples, **kwargs)
        pct = [f"{100.0 * s[k] / max(1, s['images']):.1f}" for k in ("guessed", "within_1km", "within_10km", "within_25km")]
        lines.append(f"| {label} | {s['images']} | " + " | ".join(pct) + " |")
    return "\n".join(lines)


def ground_truth_samples(world, limit: int | None = None, seed: int = 11):
    metas = [world.meta(i) for i in world.ids]
    metas = [m for m in metas if m.has_sign or m.has_dashcam]
    if limit is not None and limit < len(metas):
        metas = random.Random(seed).sample(metas, limit)
    return [(m, [t.text for t in world.ground_truth(m.id)]) for m in metas]


def ocr_samples(world, n: int, seed: int = 7):
    """(meta, ground truth, RapidOCR unblurred texts, RapidOCR blurred texts) for n rendered images."""
    import cv2
    import numpy as np

    from geo_assets.preprocess.ocr import make_ocr_engine
    from geo_assets.preprocess.variants import make_blurred_variant, ocr_image

    metas = [m for m in (world.meta(i) for i in world.ids) if m.has_sign or m.has_dashcam]
    engine = make_ocr_engine("rapidocr", "cpu")
    out = []
    for m in random.Random(seed).sample(metas, min(n, len(metas))):
        image = cv2.imdecode(np.frombuffer(world.render(m.id).jpeg, np.uint8), cv2.IMREAD_COLOR)
        ocr_pass = ocr_image(engine, image)
        words = ocr_pass.words
        blurred = make_blurred_variant(image, engine, words, regions=ocr_pass.regions)
        out.append((m, [t.text for t in world.ground_truth(m.id)], [w.text for w in words],
                    [w.text for w in blurred.words_after]))
    return out


def main(argv: list[str] | None = None) -> None:
    from geo_assets.synthetic.world import SyntheticWorld

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ocr", type=int, default=0, help="read this many rendered images with RapidOCR")
    parser.add_argument("--limit", type=int, default=None, help="ground truth: at most this many images")
    args = parser.parse_args(argv)
    world = SyntheticWorld()
    started = time.perf_counter()
    if args.ocr:
        rows = ocr_samples(world, args.ocr)
        for label, idx in (("ground truth", 1), ("RapidOCR, unblurred", 2), ("RapidOCR, blurred", 3)):
            print(f"\n{label}: {len(rows)} rendered images with text\n")
            print(table([(r[0].lat, r[0].lon, r[idx]) for r in rows]))
    else:
        rows = ground_truth_samples(world, args.limit)
        print(f"world: {len(world)} images, {len(rows)} measured (with any text)\n")
        print(table([(m.lat, m.lon, texts) for m, texts in rows]))
        signs = [(m.lat, m.lon, texts) for m, texts in rows if not m.has_dashcam]
        print(f"\nsigns only (no dashcam overlay): {len(signs)} images\n")
        print(table(signs))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":  # pragma: no cover
    main()
