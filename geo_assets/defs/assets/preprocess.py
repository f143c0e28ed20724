"""Preprocessing per tile (seed 3.4.1-3.4.5): one OCR pass, blurred images, captions.

Each asset keeps the rows it already computed for unchanged inputs (keyed by image
sha256 and the engine/captioner id, `geo_assets.defs.incremental`) and computes only
the rest, so a re-materialization after a pull touches only the new images.
"""

import hashlib
import json
import time
from collections import Counter

import cv2
import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geo_assets.defs.incremental import data_version_of_columns, update_table
from geo_assets.defs.metadata import preview_md
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
from geo_assets.store.parquet import atomic_write_bytes, read_table, write_table
from geo_assets.tables.incremental import constant, lookup


def _engine_id(engine) -> str:
    return f"{engine.name}:{engine.version}"


def _words_json(words: list) -> str:
    return json.dumps([w.to_dict() for w in words], separators=(",", ":"))


def _words_from_json(text: str | None) -> list:
    return [OcrWord.from_dict(d) for d in json.loads(text)] if text else []


def _boxes_json(boxes: list) -> str:
    return json.dumps([np.asarray(b, dtype=float).round(1).tolist() for b in boxes])


def _failed(table: pa.Table) -> np.ndarray:
    """Per row: the `error` column is set (non-empty)."""
    return np.array([bool(e) for e in table.column("error").to_pylist()], dtype=bool)


def _raw_images(layout, tile: str) -> pa.Table:
    return read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA)


class BlurConfig(dg.Config):
    padding_frac: float = blur_mod.DEFAULT_PADDING_FRAC
    padding_px: int = blur_mod.DEFAULT_PADDING_PX
    scales: list[float] = list(blur_mod.DEFAULT_SCALES)
    """Detection passes (on the contrast-normalised image) beyond the OCR pass, whose own
    low-threshold regions are always blurred. [1.0, 1.5] by default: on real photos the OCR pass
    alone left legible text unblurred (PERFORMANCE.md, "Blur on real scene text")."""
    original_scales: list[float] = list(blur_mod.DEFAULT_ORIGINAL_SCALES)
    """Extra detection passes on the original image (none by default; [2.0] finds more tiny text at a cost)."""
    sign_boards: bool = blur_mod.DEFAULT_SIGN_BOARDS
    """Blur whole small sign boards whose marks no pass found (tiny faint text)."""
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


def _ocr_rows(log, layout, engine, regions_path, regions: pa.Table):
    """`compute` for ocr_text: one OCR pass per image; the pass's low-threshold regions
    go to the `ocr_regions` cache, written before the table so a table row always has them."""
    engine_id = _engine_id(engine)

    def compute(missing: pa.Table) -> list[dict]:
        have = set(regions.filter(pc.equal(regions["engine"], engine_id))["image_sha256"].to_pylist())
        rows, new_regions = [], []
        for image_id, sha, path in zip(*(missing[c].to_pylist() for c in ("image_id", "sha256", "path"))):
            started = time.perf_counter()
            try:
                result = ocr_image(engine, load_bgr(layout.root / path))
                row = {"words_json": _words_json(result.words), "n_words": len(result.words), "error": None}
                if sha not in have:
                    have.add(sha)
                    new_regions.append({"image_sha256": sha, "engine": engine_id, "regions_json": _boxes_json(result.regions)})
            except UnreadableImage as exc:  # recorded, the run goes on with the other images
                row = {"words_json": "[]", "n_words": 0, "error": str(exc)}
                log.warning(f"OCR skipped {image_id}: {exc}")
            rows.append({"image_id": image_id, "sha256": sha, "engine": engine_id,
                         "seconds": time.perf_counter() - started, **row})
        if new_regions:
            write_table(regions_path, pa.concat_tables(
                [regions, pa.Table.from_pylist(new_regions, schema=OCR_REGIONS_CACHE_SCHEMA)]))
        return rows

    return compute


def materialize_ocr_text(context: dg.AssetExecutionContext, storage: StorageResource, ocr: OcrResource) -> dg.MaterializeResult:
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "ocr_text", tile):
        engine = ocr.primary()
        engine_id = _engine_id(engine)
        regions_path = layout.cache_path("ocr_regions", tile)
        regions = read_table(regions_path, OCR_REGIONS_CACHE_SCHEMA)
        with_regions = regions.filter(pc.equal(regions["engine"], engine_id))["image_sha256"].combine_chunks()
        wanted = constant(_raw_images(layout, tile).select(["image_id", "sha256", "path"]), "engine", engine_id)
        # A row from before the regions were kept is read again (its words come out the same).
        result = update_table(layout.table_path("ocr_text", tile), OCR_SCHEMA, wanted, ["image_id", "sha256", "engine"],
                              _ocr_rows(context.log, layout, engine, regions_path, regions),
                              reusable=lambda old: _failed(old) | pc.is_in(old["sha256"], with_regions).to_numpy())
        table = result.table
        return dg.MaterializeResult(
            metadata={"engine": engine_id, "runtime": getattr(engine, "runtime", engine.device), **result.counts(),
                      "errors": int(_failed(result.computed).sum()),
                      "images_with_text": int(pc.sum(pc.greater(table["n_words"], 0)).as_py() or 0)},
            data_version=data_version_of_columns(table, ["image_id", "sha256", "engine"]),
        )


def _readable_after_blur(before: list, after: list) -> list[str]:
    """Words the checker reads on the blurred image that were there before blurring."""
    return [text for text, _ in read_matches(after, before, split_truths=False)]


def _blur_rows(log, layout, tile: str, engine, config: BlurConfig, ocr_table: pa.Table, regions: pa.Table):
    """`compute` for blurred_images: blur every text region of each image, write the JPEG."""

    def compute(missing: pa.Table) -> list[dict]:
        missing = lookup(missing, ocr_table, ["image_id"], {"sha256": "ocr_sha256", "error": "ocr_error", "words_json": "words_json"})
        missing = lookup(missing, regions, ["sha256", "ocr_engine"], ["regions_json"], right_key=["image_sha256", "engine"])
        rows = []
        for m in missing.to_pylist():  # the images blurred now: one dict each
            started = time.perf_counter()
            base = {k: m[k] for k in ("image_id", "sha256", "blur_version", "ocr_engine")}
            try:
                if m["ocr_sha256"] != m["sha256"]:
                    raise UnreadableImage("no OCR row for this image version; materialize ocr_text first")
                if m["ocr_error"]:
                    raise UnreadableImage(m["ocr_error"])
                # No cached regions (None): make_blurred_variant runs the OCR pass's detector again.
                image_regions = json.loads(m["regions_json"]) if m["regions_json"] is not None else None
                variant = make_blurred_variant(load_bgr(layout.root / m["path"]), engine, _words_from_json(m["words_json"]),
                                               regions=image_regions, **config.variant_kwargs())
                data = encode_jpeg(variant.image_bgr)
                if data is None:
                    raise UnreadableImage("could not encode blurred image")
                blurred_path = layout.blurred_image_path(tile, m["image_id"])
                atomic_write_bytes(blurred_path, data)
                row = {**base, "blurred_path": str(blurred_path.relative_to(layout.root)),
                       "blurred_sha256": hashlib.sha256(data).hexdigest(), "boxes_json": _boxes_json(variant.boxes),
                       "n_boxes": len(variant.boxes), "ocr_words_json": _words_json(variant.words_after), "error": None}
            except UnreadableImage as exc:
                log.warning(f"blur skipped {m['image_id']}: {exc}")
                row = {**base, "blurred_path": "", "blurred_sha256": "", "boxes_json": "[]", "n_boxes": 0,
                       "ocr_words_json": "[]", "error": str(exc)}
            rows.append({**row, "seconds": time.perf_counter() - started})
        return rows

    return compute


def _coverage_check(world, ok: pa.Table, images: pa.Table, config: BlurConfig) -> dg.AssetCheckResult:
    """Check (a): coverage of the synthetic world's ground-truth text boxes."""
    if world is None or not ok.num_rows:
        return dg.AssetCheckResult(check_name="blur_covers_ground_truth_text", passed=True,
                                   metadata={"skipped": "no ground truth for this source"})
    ok = lookup(ok, images, ["image_id"], ["height", "width"])
    coverages = []
    for image_id, boxes_json, height, width in zip(*(ok[c].to_pylist() for c in ("image_id", "boxes_json", "height", "width"))):
        gt = world.ground_truth(image_id)
        if gt:
            coverages += blur_mod.blur_coverage(json.loads(boxes_json), [t.polygon for t in gt], (height, width),
                                                padding_frac=config.padding_frac, padding_px=config.padding_px)
    covered = sum(1 for c in coverages if c >= 0.8)
    share = covered / len(coverages) if coverages else 1.0
    return dg.AssetCheckResult(
        check_name="blur_covers_ground_truth_text", passed=share >= config.coverage_target,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"target": config.coverage_target, "text_boxes": len(coverages), "covered_80pct": covered, "share": round(share, 4),
                  "min_coverage": round(min(coverages), 3) if coverages else 1.0},
    )


def _readability_check(layout, tile: str, world, ok: pa.Table, ocr: OcrResource, check_sample: int) -> dg.AssetCheckResult:
    """Check (b): a second engine re-reads the blurred images that had the most text. Its
    reads are cached by blurred image, so a rerun with nothing new loads no engine."""
    order = np.argsort(-pc.fill_null(ok["ocr_n_words"], 0).to_numpy(), kind="stable")[:check_sample]
    sample = constant(ok.take(pa.array(order, type=pa.int64())), "checker", ocr.check_engine)
    built = []

    def read(missing: pa.Table) -> list[dict]:
        built.append(built[0] if built else ocr.second())
        return [{"blurred_sha256": sha, "checker": ocr.check_engine,
                 "words_json": _words_json(built[0].read(load_bgr(layout.root / path)))}
                for sha, path in zip(missing["blurred_sha256"].to_pylist(), missing["blurred_path"].to_pylist())]

    reads = update_table(layout.cache_path("blur_check", tile), BLUR_CHECK_CACHE_SCHEMA, sample,
                         ["blurred_sha256", "checker"], read, keep_old=True)
    leaked: list[str] = []
    for image_id, before_json, after_json in zip(sample["image_id"].to_pylist(), sample["ocr_words_before"].to_pylist(),
                                                 reads.table["words_json"].to_pylist()):
        before = [w.text for w in _words_from_json(before_json)]
        if world is not None:
            before += [t.text for t in world.ground_truth(image_id)]
        leaked += _readable_after_blur(before, _words_from_json(after_json))
    return dg.AssetCheckResult(
        check_name="blur_leaves_no_readable_words", passed=not leaked,
        metadata={"checker": _engine_id(built[0]) if built else ocr.check_engine, "images_checked": sample.num_rows,
                  "read_now": reads.rows_computed, "reused_reads": reads.rows_reused,
                  "readable_words": len(leaked), "examples": ", ".join(leaked[:10]) or "(none)"},
    )


def materialize_blurred_images(
    context: dg.AssetExecutionContext, config: BlurConfig, storage: StorageResource, ocr: OcrResource,
    image_source: ImageSourceResource,
):
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "blurred_images", tile):
        images = _raw_images(layout, tile)
        ocr_table = read_table(layout.table_path("ocr_text", tile), OCR_SCHEMA)
        regions = read_table(layout.cache_path("ocr_regions", tile), OCR_REGIONS_CACHE_SCHEMA)
        engine = ocr.primary()
        # The version holds the blur config too: changing the passes or padding re-blurs.
        wanted = constant(constant(images.select(["image_id", "sha256", "path"]), "blur_version", config.blur_version()),
                          "ocr_engine", _engine_id(engine))
        result = update_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA, wanted,
                              ["image_id", "sha256", "blur_version", "ocr_engine"],
                              _blur_rows(context.log, layout, tile, engine, config, ocr_table, regions),
                              reusable=lambda old: [(layout.root / p).exists() for p in old["blurred_path"].to_pylist()])
        rows = result.table
        ok = lookup(rows.filter(pa.array(~_failed(rows))), ocr_table, ["image_id"],
                    {"n_words": "ocr_n_words", "words_json": "ocr_words_before"})
        world = image_source.world()
        yield _coverage_check(world, ok, images, config)
        yield _readability_check(layout, tile, world, ok, ocr, config.check_sample)

        new = result.computed.filter(pa.array(~_failed(result.computed)))["image_id"].to_pylist()
        preview = lookup(ok.filter(pc.is_in(ok["image_id"], pa.array((new or ok["image_id"].to_pylist())[:2], pa.string()))),
                         images, ["image_id"], {"path": "raw_path"})
        yield dg.MaterializeResult(
            metadata={
                **result.counts(),
                "errors": rows.num_rows - ok.num_rows,
                "text_regions": int(pc.sum(ok["n_boxes"]).as_py() or 0),
                "ocr_words_before_blur": int(pc.sum(ok["ocr_n_words"]).as_py() or 0),
                "ocr_words_after_blur": sum(len(json.loads(w)) for w in ok["ocr_words_json"].to_pylist()),
                "before_after_preview": preview_md(
                    [layout.root / p for pair in zip(preview["raw_path"].to_pylist(), preview["blurred_path"].to_pylist()) for p in pair],
                    [c for i in preview["image_id"].to_pylist() for c in (f"{i} before", f"{i} after")],
                ),
            },
            data_version=data_version_of_columns(rows, ["image_id", "blurred_sha256"]),
        )


class CaptionConfig(dg.Config):
    batch_size: int = 16


def _caption_items(layout, tile: str) -> pa.Table:
    """(image_id, variant, image_sha256, path, words_json) per image that made it through
    the blur, unblurred then blurred, in the blur table's order."""
    blur = read_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA)
    blur = lookup(blur.filter(pa.array(~_failed(blur))), _raw_images(layout, tile), ["image_id"],
                  {"sha256": "raw_sha256", "path": "raw_path"})
    blur = lookup(blur, read_table(layout.table_path("ocr_text", tile), OCR_SCHEMA), ["image_id"],
                  {"image_id": "ocr_image_id", "words_json": "ocr_words_json_raw"})
    blur = blur.filter(pc.and_(pc.is_valid(blur["raw_sha256"]), pc.is_valid(blur["ocr_image_id"])))
    names = ["image_id", "variant", "image_sha256", "path", "words_json"]
    unblurred = pa.table([blur["image_id"], pa.array(["unblurred"] * blur.num_rows), blur["raw_sha256"], blur["raw_path"],
                          blur["ocr_words_json_raw"]], names=names)
    blurred = pa.table([blur["image_id"], pa.array(["blurred"] * blur.num_rows), blur["blurred_sha256"], blur["blurred_path"],
                        blur["ocr_words_json"]], names=names)
    interleaved = np.column_stack([np.arange(blur.num_rows), blur.num_rows + np.arange(blur.num_rows)]).ravel()
    return pa.concat_tables([unblurred, blurred]).take(pa.array(interleaved, type=pa.int64()))


def _caption_rows(log, layout, model, batch_size: int):
    """`compute` for the caption cache: the captioner's text per missing image, in batches."""

    def compute(missing: pa.Table) -> pa.Table:
        generated: list[str] = []
        paths = missing["path"].to_pylist()
        for start in range(0, len(paths), batch_size):
            rgb = [cv2.cvtColor(load_bgr(layout.root / p), cv2.COLOR_BGR2RGB) for p in paths[start : start + batch_size]]
            generated += generate_captions(model, rgb, batch_size)
            log.info(f"captioned {min(start + batch_size, len(paths))}/{len(paths)}")
        return missing.select(["image_sha256", "variant", "captioner_id"]).append_column("generated", pa.array(generated, pa.string()))

    return compute


def materialize_captions(
    context: dg.AssetExecutionContext, config: CaptionConfig, storage: StorageResource, captioner: CaptionerResource,
):
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "captions", tile):
        model = captioner.captioner()
        items = constant(_caption_items(layout, tile), "captioner_id", model.captioner_id)
        # The generated text is the costly part: cached by (image, variant, captioner), the
        # cache written before the tables, so a crash after it loses no captioning work.
        cached = update_table(layout.cache_path("captions", tile), CAPTION_CACHE_SCHEMA, items,
                              ["image_sha256", "variant", "captioner_id"],
                              _caption_rows(context.log, layout, model, config.batch_size), keep_old=True)
        rows = []
        for (image_id, variant, sha, words_json), generated in zip(
                zip(*(items[c].to_pylist() for c in ("image_id", "variant", "image_sha256", "words_json"))),
                cached.table["generated"].to_pylist()):
            text = caption_text(generated, _words_from_json(words_json))
            rows.append({"image_id": image_id, "variant": variant, "image_sha256": sha, "captioner_id": model.captioner_id,
                         "generated": generated, "ocr_clean": text.cleaned, "caption": text.caption,
                         "place_names_json": json.dumps(text.place_names), "has_place_text": bool(text.place_names)})
        table = pa.Table.from_pylist(rows, schema=CAPTION_SCHEMA)
        for variant in BLUR_VARIANTS:
            write_table(layout.table_path("captions", tile, variant), table.filter(pc.equal(table["variant"], variant)))

        leaking = [r["image_id"] for r in rows if contains_coordinates(r["caption"])]
        yield dg.AssetCheckResult(check_name="no_coordinates_in_captions", passed=not leaking,
                                  metadata={"captions": len(rows), "with_coordinates": len(leaking)})
        by_variant = [r for v in BLUR_VARIANTS for r in rows if r["variant"] == v]
        samples = "\n".join(f"- **{r['variant']}** `{r['image_id']}`: {r['caption']}" for r in by_variant[:6])
        yield dg.MaterializeResult(
            metadata={
                "captioner": model.captioner_id,
                "captions": len(rows),
                **cached.counts(),
                "with_place_text": dict(Counter(r["variant"] for r in by_variant if r["has_place_text"])),
                "sample_captions": dg.MetadataValue.md(samples or "(none)"),
            },
            data_version=data_version_of_columns(table, ["image_id", "variant", "caption"]),
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
