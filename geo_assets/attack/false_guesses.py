"""How often the attacker names a place where it should not, and how often it is right.

    python -m geo_assets.attack.false_guesses --real ../shared/data/real --ocr-cache DIR \
        --engine rapidocr --engine easyocr --synthetic-ocr 150 --out geo_assets/data/attacker_false_guesses.json

False guesses: the real sets (``data/real_sets.py``: ICDAR 2015, Street View Text) hold no UK
image, so every place the attacker names there is wrong. Readers: the ground-truth
transcriptions (a perfect OCR) and each engine's cached read of the original image
(``ocr_cache``; missing reads are made and cached, minutes per engine).

Recall: the synthetic world's text-reliant **test** images (the split of
``model/splits.py`` by sequence; text-reliant as the ``captions`` asset defines it: the
cleaned unblurred text names a place), with the renderer's ground-truth text and,
for ``--synthetic-ocr N`` of them, RapidOCR's read of the rendered image; within 10 km
of the true position, an abstention counting as a miss.

Both attackers are measured: every mention counting (``strict=False``, "before") and today's.
The JSON is what the privacy report prints beside the attacker's hit rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from geo_assets.attack.gazetteer import ATTACKER_VERSION, locate
from geo_assets.data.real_sets import RealImage, RealSetError, load_text_sets
from geo_assets.geo.haversine import haversine_km
from geo_assets.preprocess.ocr import OcrWord

DATA_PATH = Path(__file__).resolve().parents[1] / "data" / "attacker_false_guesses.json"
ATTACKERS = {"before": {"strict": False}, "after": {"strict": True}}
GROUND_TRUTH = "ground truth"


def load_measurement(path: str | Path = DATA_PATH) -> dict | None:
    """The shipped measurement (what the privacy report prints), or None when there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or "false_guesses" not in data:
        raise ValueError(f"{path}: not an attacker false-guess measurement (no 'false_guesses')")
    return data


def gt_words(image: RealImage) -> list[OcrWord]:
    """The legible transcriptions as OCR words, boxes kept (for the line check)."""
    return [OcrWord(w.text, 1.0, [list(p) for p in w.polygon]) for w in image.words if w.legible and w.text]


def false_guesses(reads: dict[str, Sequence], strict: bool = True, examples: int = 12) -> dict:
    """Images with any guess among ``reads`` (image name -> words), and what was named."""
    named: list[tuple[str, str, str]] = []
    for name, words in reads.items():
        guess = locate(words, strict=strict)
        if guess is not None:
            texts = " / ".join(getattr(w, "text", w) for w in words)
            named.append((name, guess.matched, texts[:120]))
    n = len(reads)
    return {"images": n, "guessed": len(named), "guessed_pct": round(100.0 * len(named) / max(1, n), 2),
            "places": dict(Counter(m for _, m, _ in named).most_common(15)),
            # image and place only: the sets' transcriptions stay in ../shared, out of the package
            "examples": [{"image": i, "named": m} for i, m, _ in named[:examples]]}


def real_measurement(sets: dict[str, list[RealImage]], engine_reads: dict[str, dict[str, dict[str, list]]]) -> dict:
    """Per reader (ground truth, each engine) and attacker: per set and both sets together."""
    readers: dict[str, dict[str, dict[str, list]]] = {GROUND_TRUTH: {s: {r.name: gt_words(r) for r in imgs}
                                                                      for s, imgs in sets.items()}}
    # Engines' reads as the gazetteer_attack asset passes them: the texts in reading order (its
    # rows keep texts, not boxes). Ground truth keeps its boxes: it has no reading order,
    # one word per item, and its boxes are the only way to see a line ("HARRY" "WINSTON").
    readers.update({engine: {s: {name: [w.text for w in words] for name, words in reads.items()}
                             for s, reads in per_set.items()} for engine, per_set in engine_reads.items()})
    out: dict = {}
    for reader, per_set in readers.items():
        for label, kwargs in ATTACKERS.items():
            entry = {s: false_guesses(reads, **kwargs) for s, reads in per_set.items()}
            images = sum(e["images"] for e in entry.values())
            guessed = sum(e["guessed"] for e in entry.values())
            entry["all"] = {"images": images, "guessed": guessed, "guessed_pct": round(100.0 * guessed / max(1, images), 2)}
            out.setdefault(reader, {})[label] = entry
    return out


def synthetic_test_images(world, limit: int | None = None, seed: int = 21):
    """(meta, ground-truth texts) of the world's test-split images whose ground truth has text."""
    from geo_assets.model.splits import assign_splits

    metas = [world.meta_at(i) for i in range(len(world))]
    splits = assign_splits([m.id for m in metas], [m.sequence for m in metas], [m.lat for m in metas],
                           [m.lon for m in metas])
    test = [m for m, s in zip(metas, splits) if s == "test" and (m.has_sign or m.has_dashcam)]
    if limit is not None and limit < len(test):
        test = random.Random(seed).sample(test, limit)
    return [(m, [t.text for t in world.ground_truth(m.id)]) for m in test]


def text_reliant(texts: Sequence[str]) -> bool:
    """As the ``captions`` asset decides it: the cleaned text names a place."""
    from geo_assets.preprocess.text_cleaning import clean_ocr_text, find_place_names

    return bool(find_place_names(clean_ocr_text(list(texts))))


def recall(samples: list[tuple[float, float, Sequence]], strict: bool) -> dict:
    n = len(samples)
    guessed = within = 0
    for lat, lon, words in samples:
        g = locate(words, strict=strict)
        if g is None:
            continue
        guessed += 1
        within += float(haversine_km(lat, lon, g.lat, g.lon)) <= 10.0
    return {"images": n, "guessed_pct": round(100.0 * guessed / max(1, n), 2),
            "within_10km_pct": round(100.0 * within / max(1, n), 2), "within_10km": within}


def synthetic_measurement(world, ocr_n: int, cache_dir: Path | None, log=print) -> dict:
    rows = synthetic_test_images(world)
    reliant = [(m, t) for m, t in rows if text_reliant(t)]
    out = {"test_images_with_text": len(rows), GROUND_TRUTH: {
        label: recall([(m.lat, m.lon, t) for m, t in reliant], **kw) for label, kw in ATTACKERS.items()}}
    if ocr_n:
        import cv2
        import numpy as np

        from geo_assets.attack.ocr_cache import fill_reads
        from geo_assets.preprocess.ocr import make_ocr_engine

        sample = random.Random(7).sample(rows, min(ocr_n, len(rows)))
        engine = make_ocr_engine("rapidocr", "cpu")

        def loader(image_id):
            return lambda: cv2.imdecode(np.frombuffer(world.render(image_id).jpeg, np.uint8), cv2.IMREAD_COLOR)

        path = (cache_dir or Path("/tmp")) / f"synthetic_seed{world.seed}_test_rapidocr.parquet"
        reads = fill_reads([(m.id, loader(m.id)) for m, _ in sample], engine, path, log=log)
        ocr_reliant = [(m, [w.text for w in reads[m.id]]) for m, _ in sample if text_reliant([w.text for w in reads[m.id]])]
        out["rapidocr"] = {"sampled": len(sample), **{label: recall([(m.lat, m.lon, w) for m, w in ocr_reliant], **kw)
                                                     for label, kw in ATTACKERS.items()}}
    return out


def main(argv: list[str] | None = None) -> None:
    from geo_assets.attack.ocr_cache import cache_path, fill_cache, load_reads
    from geo_assets.preprocess.ocr import make_ocr_engine
    from geo_assets.synthetic.world import SyntheticWorld

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=None, help="folder with icdar2015_train/ and svt_train/ (default: real_data_dir())")
    parser.add_argument("--ocr-cache", type=Path, default=None, help="folder of <set>_<engine>.parquet reads")
    parser.add_argument("--engine", action="append", choices=("rapidocr", "easyocr"), default=[])
    parser.add_argument("--cached-only", action="store_true",
                        help="engines: measure the reads already cached, read nothing new (the JSON says how many)")
    parser.add_argument("--synthetic-ocr", type=int, default=0, help="synthetic test images RapidOCR reads")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (e.g. the package's data file)")
    args = parser.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        sets = load_text_sets(args.real)
    except RealSetError as exc:
        parser.error(str(exc))
    engine_reads = {}
    for name in args.engine:
        if args.ocr_cache is None:
            parser.error("--engine needs --ocr-cache")
        if args.cached_only:
            engine_reads[name] = {s: {r.name: reads[r.name] for r in imgs if r.name in reads}
                                  for s, imgs in sets.items()
                                  for reads in [load_reads(cache_path(args.ocr_cache, s, name))]}
            continue
        engine = make_ocr_engine(name, "cpu")
        args.ocr_cache.mkdir(parents=True, exist_ok=True)
        engine_reads[name] = {s: fill_cache(imgs, engine, cache_path(args.ocr_cache, s, name), log=log)
                              for s, imgs in sets.items()}
    world = SyntheticWorld()
    raw = list(argv if argv is not None else sys.argv[1:])
    # The command is printed in every privacy report: folders of this machine are not shown.
    shown = ["DIR" if prev == "--ocr-cache" else a for prev, a in zip([None, *raw], raw)]
    result = {
        "date": dt.date.today().isoformat(),
        "attacker_version": ATTACKER_VERSION,
        "command": "python -m geo_assets.attack.false_guesses " + " ".join(shlex.quote(a) for a in shown),
        "sets": {s: len(imgs) for s, imgs in sets.items()},
        "false_guesses": real_measurement(sets, engine_reads),
        "synthetic": {"world_seed": world.seed, **synthetic_measurement(world, args.synthetic_ocr, args.ocr_cache, log)},
    }
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(summary(result))


def summary(result: dict) -> str:
    lines = ["| reader | attacker | " + " | ".join(result["sets"]) + " | both |", "|---" * (3 + len(result["sets"])) + "|"]
    for reader, per in result["false_guesses"].items():
        for label, entry in per.items():
            cells = [f"{entry[s]['guessed']}/{entry[s]['images']} ({entry[s]['guessed_pct']:.1f}%)"
                     for s in [*result["sets"], "all"]]
            lines.append(f"| {reader} | {label} | " + " | ".join(cells) + " |")
    syn = result["synthetic"]
    lines += ["", "| synthetic text-reliant test images | attacker | images | guessed % | within 10 km % |", "|---|---|---|---|---|"]
    for reader in (GROUND_TRUTH, "rapidocr"):
        for label in ATTACKERS:
            e = syn.get(reader, {}).get(label)
            if e:
                lines.append(f"| {reader} | {label} | {e['images']} | {e['guessed_pct']:.1f} | {e['within_10km_pct']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main()
