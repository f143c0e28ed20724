"""Preprocessing per tile (seed 3.4.1-3.4.5): one OCR pass, blurred images, captions.

Each asset keeps the rows it already computed for unchanged inputs (keyed by
image sha256 and the engine/captioner id) and computes only the rest, so a
re-materialization after a pull touches only the new images.
"""

import hashlib
import json
import time
from collections import Counter

import cv2
import dagster as dg
import numpy as np
import pyarrow as pa

from geo_assets.defs.metadata import data_version_of, preview_md
from geo_assets.defs.tile_assets import tile_asset, tile_definitions, with_row_count
from geo_assets.defs.resources import CaptionerResource, ImageSourceResource, OcrResource, StorageResource
from geo_assets.store.images import UnreadableImage, load_bgr
from geo_assets.store.schemas import (
    BLUR_CHECK_CACHE_SCHEMA, BLUR_SCHEMA, CAPTION_CACHE_SCHEMA, CAPTION_SCHEMA, OCR_REGIONS_CACHE_SCHEMA, OCR_SCHEMA,
    RAW_IMAGES_SCHEMA,
)
from geo_assets.preprocess import blur as blur_mod
from geo_assets.preprocess.ocr import OcrWord
from geo_assets.preprocess.text_cleaning import contains_coordinates, read_matches
from geo_assets.preprocess.variants import caption_text, encode_jpeg, generate_captions, make_blurred_variant, ocr_image
from geo_assets.config.pools import gpu_step_kwargs
from geo_assets.config.settings import BLUR_VARIANTS
from geo_assets.defs.partitions import tile_partition_of
from geo_assets.store.locks import partition_lock
from geo_assets.store.parquet import atomic_write_bytes, read_table, rows_by, write_table



def _engine_id(engine) -> str:
    return f"{engine.name}:{engine.version}"


def _words_json(words: list) -> str:
    return json.dumps([w.to_dict() for w in words], separators=(",", ":"))


def _words_from_json(text: str | None) -> list:
    return [OcrWord.from_dict(d) for d in json.loads(text)] if text else []


def _boxes_json(boxes: list) -> str:
    return json.dumps([np.asarray(b, dtype=float).round(1).tolist() for b in boxes])


def _read_regions(path) -> tuple[pa.Table, dict]:
    table = read_table(path, OCR_REGIONS_CACHE_SCHEMA)
    return table, {(r["image_sha256"], r["engine"]): r["regions_json"] for r in table.to_pylist()}


class BlurConfig(dg.Config):
    padding_frac: float = blur_mod.DEFAULT_PADDING_FRAC
    padding_px: int = blur_mod.DEFAULT_PADDING_PX
    scales: list[float] = list(blur_mod.DEFAULT_SCALES)
    """Detection passes (on the contrast-normalised image) beyond the OCR pass, whose own
    low-threshold regions are always blurred. [1.0, 1.5] by default (blur-v4): chosen on real
    photos, where the OCR pass alone left legible text unblurred (PERFORMANCE.md)."""
    original_scales: list[float] = list(blur_mod.DEFAULT_ORIGINAL_SCALES)
    """Extra detection passes on the original image; [2.0] adds ~0.4 s/image."""
    sign_boards: bool = blur_mod.DEFAULT_SIGN_BOARDS
    """Blur whole small sign boards whose marks no pass found (tiny faint text; 0.01-0.02 s/image)."""
    coverage_target: float = 0.99
    """Share of ground-truth text boxes that must be >= 80% blurred. A miss is a WARN: what the
    default passes miss is sub-10 px, low-contrast text that neither OCR engine reads."""
    check_sample: int = 4
    """Blurred images per tile re-read by the second OCR engine for the readability check."""

    def variant_kwargs(self) -> dict:
        """The `make_blurred_variant` options this config sets (the asset and the bench share them)."""
        return {"scales": self.scales, "original_scales": self.original_scales, "sign_boards": self.sign_boards,
                "padding_frac": self.padding_frac, "padding_px": self.padding_px}

    def blur_version(self) -> str:
        scales = ",".join(f"{v:g}" for v in self.scales)
        original = ",".join(f"{v:g}" for v in self.original_scales)
        boards = "|boards" if self.sign_boards else ""
        return f"{blur_mod.BLUR_VERSION}|s={scales}|o={original}{boards}|p={self.padding_frac:g}+{self.padding_px}"


def materialize_ocr_text(context: dg.AssetExecutionContext, storage: StorageResource, ocr: OcrResource) -> dg.MaterializeResult:
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "ocr_text", tile):
        images = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA)
        out_path = layout.table_path("ocr_text", tile)
        engine = ocr.primary()
        engine_id = _engine_id(engine)
        done = {(r["image_id"], r["sha256"]): r for r in read_table(out_path, OCR_SCHEMA).to_pylist() if r["engine"] == engine_id}
        # The same detector pass's low-threshold regions, kept for the blur (a row without
        # them, from before they were kept, is read again: the words come out the same).
        regions_path = layout.cache_path("ocr_regions", tile)
        regions_table, regions = _read_regions(regions_path)
        new_regions = []

        rows, computed, errors, seconds = [], 0, 0, 0.0
        for img in images.to_pylist():
            key = (img["image_id"], img["sha256"])
            if key in done and (done[key]["error"] or (img["sha256"], engine_id) in regions):
                rows.append(done[key])
                continue
            started = time.perf_counter()
            try:
                result = ocr_image(engine, load_bgr(layout.root / img["path"]))
                words = result.words
                row = {"words_json": _words_json(words), "n_words": len(words), "error": None}
                if (img["sha256"], engine_id) not in regions:
                    regions[(img["sha256"], engine_id)] = _boxes_json(result.regions)
                    new_regions.append({"image_sha256": img["sha256"], "engine": engine_id,
                                        "regions_json": regions[(img["sha256"], engine_id)]})
            except UnreadableImage as exc:  # recorded, the run goes on with the other images
                row = {"words_json": "[]", "n_words": 0, "error": str(exc)}
                errors += 1
                context.log.warning(f"OCR skipped {img['image_id']}: {exc}")
            took = time.perf_counter() - started
            seconds += took
            computed += 1
            rows.append({"image_id": img["image_id"], "sha256": img["sha256"], "engine": engine_id, "seconds": took, **row})
        if new_regions:  # before the table: a table row always has its regions
            write_table(regions_path, pa.concat_tables(
                [regions_table, pa.Table.from_pylist(new_regions, schema=OCR_REGIONS_CACHE_SCHEMA)]))
        table = pa.Table.from_pylist(rows, schema=OCR_SCHEMA)
        write_table(out_path, table)
        return dg.MaterializeResult(
            metadata={
                "engine": engine_id,
                "runtime": getattr(engine, "runtime", engine.device),
                "images": len(rows),
                "ocr_computed": computed,
                "ocr_reused": len(rows) - computed,
                "errors": errors,
                "seconds_per_image": round(seconds / computed, 4) if computed else 0.0,
                "images_with_text": sum(1 for r in rows if r["n_words"] > 0),
            },
            data_version=data_version_of(f"{r['image_id']}:{r['sha256']}:{engine_id}" for r in rows),
        )


def _readable_after_blur(before: list, after: list) -> list[str]:
    """Words the checker reads on the blurred image that were there before blurring."""
    return [text for text, _ in read_matches(after, before, split_truths=False)]


def materialize_blurred_images(
    context: dg.AssetExecutionContext, config: BlurConfig, storage: StorageResource, ocr: OcrResource,
    image_source: ImageSourceResource,
):
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "blurred_images", tile):
        images = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA)
        ocr_rows = rows_by(read_table(layout.table_path("ocr_text", tile), OCR_SCHEMA), "image_id")
        out_path = layout.table_path("blurred_images", tile)
        engine = ocr.primary()
        engine_id = _engine_id(engine)
        # The version holds the blur config too: changing the passes or padding re-blurs.
        version = config.blur_version()
        done = {(r["image_id"], r["sha256"]): r for r in read_table(out_path, BLUR_SCHEMA).to_pylist()
                if r["blur_version"] == version and r["ocr_engine"] == engine_id}
        _, regions = _read_regions(layout.cache_path("ocr_regions", tile))

        rows, computed, seconds, new_ids = [], 0, 0.0, []
        for img in images.to_pylist():
            key = (img["image_id"], img["sha256"])
            if key in done and (layout.root / done[key]["blurred_path"]).exists():
                rows.append(done[key])
                continue
            started = time.perf_counter()
            ocr_row = ocr_rows.get(img["image_id"])
            base = {"image_id": img["image_id"], "sha256": img["sha256"], "blur_version": version, "ocr_engine": engine_id}
            try:
                if ocr_row is None or ocr_row["sha256"] != img["sha256"]:
                    raise UnreadableImage("no OCR row for this image version; materialize ocr_text first")
                if ocr_row["error"]:
                    raise UnreadableImage(ocr_row["error"])
                image = load_bgr(layout.root / img["path"])
                cached = regions.get((img["sha256"], engine_id))
                # None (no cached regions): make_blurred_variant runs the OCR pass's detector again.
                image_regions = json.loads(cached) if cached is not None else None
                variant = make_blurred_variant(image, engine, _words_from_json(ocr_row["words_json"]),
                                               regions=image_regions, **config.variant_kwargs())
                data = encode_jpeg(variant.image_bgr)
                if data is None:
                    raise UnreadableImage("could not encode blurred image")
                blurred_path = layout.blurred_image_path(tile, img["image_id"])
                atomic_write_bytes(blurred_path, data)
                row = {**base, "blurred_path": str(blurred_path.relative_to(layout.root)),
                       "blurred_sha256": hashlib.sha256(data).hexdigest(),
                       "boxes_json": _boxes_json(variant.boxes),
                       "n_boxes": len(variant.boxes), "ocr_words_json": _words_json(variant.words_after), "error": None}
                new_ids.append(img["image_id"])
            except UnreadableImage as exc:
                context.log.warning(f"blur skipped {img['image_id']}: {exc}")
                row = {**base, "blurred_path": "", "blurred_sha256": "", "boxes_json": "[]", "n_boxes": 0,
                       "ocr_words_json": "[]", "error": str(exc)}
            took = time.perf_counter() - started
            row["seconds"] = took
            seconds += took
            computed += 1
            rows.append(row)
        write_table(out_path, pa.Table.from_pylist(rows, schema=BLUR_SCHEMA))

        ok_rows = [r for r in rows if not r["error"]]
        words_before = sum(ocr_rows[r["image_id"]]["n_words"] for r in ok_rows if r["image_id"] in ocr_rows)
        words_after = sum(len(json.loads(r["ocr_words_json"])) for r in ok_rows)

        by_id = rows_by(images, "image_id")

        # Check (a): coverage of the synthetic world's ground-truth text boxes.
        world = image_source.world()
        if world is not None and ok_rows:
            coverages = []
            for r in ok_rows:
                gt = world.ground_truth(r["image_id"])
                if gt:
                    shape = (by_id[r["image_id"]]["height"], by_id[r["image_id"]]["width"])
                    coverages += blur_mod.blur_coverage(json.loads(r["boxes_json"]), [t.polygon for t in gt], shape,
                                                        padding_frac=config.padding_frac, padding_px=config.padding_px)
            covered = sum(1 for c in coverages if c >= 0.8)
            share = covered / len(coverages) if coverages else 1.0
            yield dg.AssetCheckResult(
                check_name="blur_covers_ground_truth_text", passed=share >= config.coverage_target,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"target": config.coverage_target, "text_boxes": len(coverages), "covered_80pct": covered, "share": round(share, 4),
                          "min_coverage": round(min(coverages), 3) if coverages else 1.0},
            )
        else:
            yield dg.AssetCheckResult(check_name="blur_covers_ground_truth_text", passed=True,
                                      metadata={"skipped": "no ground truth for this source"})

        # Check (b): a second engine re-reads the blurred images that had the most text.
        # Its reads are cached by blurred image, so a rerun with nothing new loads no engine.
        sample = sorted(ok_rows, key=lambda r: -ocr_rows[r["image_id"]]["n_words"])[: config.check_sample]
        check_cache_path = layout.cache_path("blur_check", tile)
        check_cache_table = read_table(check_cache_path, BLUR_CHECK_CACHE_SCHEMA)
        check_cache = {(r["blurred_sha256"], r["checker"]): r["words_json"] for r in check_cache_table.to_pylist()}
        checker, checker_id, new_reads = None, ocr.check_engine, []
        leaked: list[str] = []
        for r in sample:
            words_json = check_cache.get((r["blurred_sha256"], checker_id))
            if words_json is None:
                checker = checker or ocr.second()
                words_json = _words_json(checker.read(load_bgr(layout.root / r["blurred_path"])))
                new_reads.append({"blurred_sha256": r["blurred_sha256"], "checker": checker_id, "words_json": words_json})
            before = [w.text for w in _words_from_json(ocr_rows[r["image_id"]]["words_json"])]
            if world is not None:
                before += [t.text for t in world.ground_truth(r["image_id"])]
            leaked += _readable_after_blur(before, _words_from_json(words_json))
        if new_reads:
            write_table(check_cache_path, pa.concat_tables(
                [check_cache_table, pa.Table.from_pylist(new_reads, schema=BLUR_CHECK_CACHE_SCHEMA)]))
        yield dg.AssetCheckResult(
            check_name="blur_leaves_no_readable_words", passed=not leaked,
            metadata={"checker": _engine_id(checker) if checker else checker_id, "images_checked": len(sample),
                      "read_now": len(new_reads), "reused_reads": len(sample) - len(new_reads),
                      "readable_words": len(leaked), "examples": ", ".join(leaked[:10]) or "(none)"},
        )

        preview_ids = (new_ids or [r["image_id"] for r in ok_rows])[:2]
        yield dg.MaterializeResult(
            metadata={
                "images": len(rows),
                "blurred_now": computed,
                "reused": len(rows) - computed,
                "errors": len(rows) - len(ok_rows),
                "seconds_per_image": round(seconds / computed, 4) if computed else 0.0,
                "text_regions": sum(r["n_boxes"] for r in ok_rows),
                "ocr_words_before_blur": words_before,
                "ocr_words_after_blur": words_after,
                "before_after_preview": preview_md(
                    [p for i in preview_ids for p in (layout.root / by_id[i]["path"],
                                                       layout.root / next(r["blurred_path"] for r in ok_rows if r["image_id"] == i))],
                    [c for i in preview_ids for c in (f"{i} before", f"{i} after")],
                ),
            },
            data_version=data_version_of(f"{r['image_id']}:{r['blurred_sha256']}" for r in rows),
        )


class CaptionConfig(dg.Config):
    batch_size: int = 16


def materialize_captions(
    context: dg.AssetExecutionContext, config: CaptionConfig, storage: StorageResource, captioner: CaptionerResource,
):
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "captions", tile):
        images = rows_by(read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA), "image_id")
        ocr_rows = rows_by(read_table(layout.table_path("ocr_text", tile), OCR_SCHEMA), "image_id")
        blur_rows = rows_by(read_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA), "image_id")
        cache_path = layout.cache_path("captions", tile)
        cache_table = read_table(cache_path, CAPTION_CACHE_SCHEMA)
        cache = {(r["image_sha256"], r["variant"], r["captioner_id"]): r["generated"] for r in cache_table.to_pylist()}
        model = captioner.captioner()
        captioner_id = model.captioner_id

        # (image_id, variant, sha256, path, ocr words) for every image that made it through blur.
        items = []
        for image_id, b in blur_rows.items():
            if b["error"] or image_id not in images or image_id not in ocr_rows:
                continue
            items.append((image_id, "unblurred", images[image_id]["sha256"], images[image_id]["path"], ocr_rows[image_id]["words_json"]))
            items.append((image_id, "blurred", b["blurred_sha256"], b["blurred_path"], b["ocr_words_json"]))
        todo = [it for it in items if (it[2], it[1], captioner_id) not in cache]

        started = time.perf_counter()
        new_cache_rows = []
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            rgb = [cv2.cvtColor(load_bgr(layout.root / it[3]), cv2.COLOR_BGR2RGB) for it in batch]
            for it, text in zip(batch, generate_captions(model, rgb, config.batch_size)):
                cache[(it[2], it[1], captioner_id)] = text
                new_cache_rows.append({"image_sha256": it[2], "variant": it[1], "captioner_id": captioner_id, "generated": text})
            context.log.info(f"captioned {min(start + config.batch_size, len(todo))}/{len(todo)}")
        seconds = time.perf_counter() - started
        if new_cache_rows:  # cache first: a crash after this loses no captioning work
            write_table(cache_path, pa.concat_tables([cache_table, pa.Table.from_pylist(new_cache_rows, schema=CAPTION_CACHE_SCHEMA)]))

        per_variant: dict[str, list[dict]] = {v: [] for v in BLUR_VARIANTS}
        for image_id, variant, sha, _path, words_json in items:
            generated = cache[(sha, variant, captioner_id)]
            text = caption_text(generated, _words_from_json(words_json))
            per_variant[variant].append({
                "image_id": image_id, "variant": variant, "image_sha256": sha, "captioner_id": captioner_id,
                "generated": generated, "ocr_clean": text.cleaned, "caption": text.caption,
                "place_names_json": json.dumps(text.place_names), "has_place_text": bool(text.place_names),
            })
        for variant, rows in per_variant.items():
            write_table(layout.table_path("captions", tile, variant), pa.Table.from_pylist(rows, schema=CAPTION_SCHEMA))

        all_rows = [r for rows in per_variant.values() for r in rows]
        leaking = [r["image_id"] for r in all_rows if contains_coordinates(r["caption"])]
        yield dg.AssetCheckResult(check_name="no_coordinates_in_captions", passed=not leaking,
                                  metadata={"captions": len(all_rows), "with_coordinates": len(leaking)})
        samples = "\n".join(f"- **{r['variant']}** `{r['image_id']}`: {r['caption']}" for r in all_rows[:6])
        yield dg.MaterializeResult(
            metadata={
                "captioner": captioner_id,
                "captions": len(all_rows),
                "cache_hits": len(items) - len(todo),
                "cache_misses": len(todo),
                "seconds_per_caption": round(seconds / len(todo), 4) if todo else 0.0,
                "with_place_text": dict(Counter(r["variant"] for r in all_rows if r["has_place_text"])),
                "sample_captions": dg.MetadataValue.md(samples or "(none)"),
            },
            data_version=data_version_of(f"{r['image_id']}:{r['variant']}:{r['caption']}" for r in all_rows),
        )


def build_preprocess_assets(tiles: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @tile_asset(
        tiles,
        deps=["raw_images"],
        code_version="ocr_text-v1",
        group_name="preprocess",
        kinds={"python", "parquet"},
        schema=OCR_SCHEMA,
    )
    def ocr_text(context: dg.AssetExecutionContext, storage: StorageResource, ocr: OcrResource):
        """One OCR pass per image: words, boxes and confidences, plus the same detector pass's
        low-threshold regions (cache `ocr_regions`). These drive both the cleaned caption text
        and the blur, so no image goes through this engine's detector twice before blurring."""
        events = [materialize_ocr_text(context, storage, ocr)]
        yield from with_row_count(events, storage, "ocr_text", context.partition_key)

    @tile_asset(
        tiles,
        deps=["raw_images", "ocr_text"],
        code_version=f"blurred_images-{blur_mod.BLUR_VERSION}",
        group_name="preprocess",
        kinds={"python", "opencv", "parquet"},
        schema=BLUR_SCHEMA,
        check_specs=[
            dg.AssetCheckSpec("blur_covers_ground_truth_text", asset="blurred_images",
                              description=">= 99% of the synthetic world's text boxes are >= 80% blurred"),
            dg.AssetCheckSpec("blur_leaves_no_readable_words", asset="blurred_images",
                              description="a second OCR engine reads no pre-blur word on a sample of blurred images"),
        ],
    )
    def blurred_images(
        context: dg.AssetExecutionContext, config: BlurConfig, storage: StorageResource, ocr: OcrResource,
        image_source: ImageSourceResource,
    ):
        """Gaussian blur over every text region: the OCR pass's boxes plus detection-only
        passes at more scales and lower thresholds (the seed's boxes alone miss small text).
        Writes the blurred JPEGs and the `blurred_images` table (boxes, re-read words)."""
        events = materialize_blurred_images(context, config, storage, ocr, image_source)
        yield from with_row_count(events, storage, "blurred_images", context.partition_key)

    @tile_asset(
        tiles,
        deps=["raw_images", "ocr_text", "blurred_images"],
        code_version="captions-v1",
        group_name="preprocess",
        kinds={"python", "pytorch", "parquet"},
        schema=CAPTION_SCHEMA,
        **gpu_step_kwargs(),
        check_specs=[dg.AssetCheckSpec("no_coordinates_in_captions", asset="captions",
                                       description="no coordinate-like string survives into any caption")],
    )
    def captions(
        context: dg.AssetExecutionContext, config: CaptionConfig, storage: StorageResource, captioner: CaptionerResource,
    ):
        """Caption text per (image, variant): generated caption + cleaned OCR text of that
        variant. Generated captions are cached by (image sha256, variant, captioner id),
        so re-materializing a tile captions only images never captioned."""
        events = materialize_captions(context, config, storage, captioner)
        yield from with_row_count(events, storage, "captions", context.partition_key)

    return [ocr_text, blurred_images, captions]


defs = tile_definitions(build_preprocess_assets)
