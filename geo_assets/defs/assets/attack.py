"""`gazetteer_attack` per tile: the model-free adversary run on what OCR
reads in each image, unblurred and blurred (``geo_assets.attack.gazetteer``).

Rows are (image, variant, engine). The primary engine's rows cost no OCR: the
unblurred words are ``ocr_text.words_json`` and the blurred words are
``blurred_images.ocr_words_json`` (the blur step's re-read of the blurred image).
A second engine (EasyOCR, the seed's) reads only test-split images, both
variants, at most ``easyocr_max_test_images`` per tile, since it is slow on CPU
(PERFORMANCE.md). Its reads of blurred images already made by the blur
readability check (``cache/blur_check``) are reused, and so are the rows of the
previous materialization whose image sha256 and engine version match (their
words are stored in the row, so a rule change re-locates without OCR): a rerun
with nothing new runs no OCR at all and builds no engine. A row whose inputs (the
words read, the split, the rule...) are all unchanged is kept as it is; the file
carries the attacker version and region it was located under, and a change to
either locates every row again.
"""

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geo_assets.attack.gazetteer import ATTACKER_VERSION, DEFAULT_RULE, RULES, locate
from geo_assets.defs.incremental import data_version_of_columns, read_previous, update_table
from geo_assets.defs.metadata import records_table
from geo_assets.defs.tile_assets import tile_asset, tile_definitions, with_row_count
from geo_assets.defs.resources import StorageResource
from geo_assets.geo.haversine import haversine_km
from geo_assets.model.splits import SplitConfig, assign_splits
from geo_assets.config.settings import GeoSettings
from geo_assets.store.catalog import refresh_views
from geo_assets.store.images import load_bgr
from geo_assets.store.layout import StorageLayout
from geo_assets.defs.partitions import tile_partition_of
from geo_assets.store.locks import partition_lock
from geo_assets.store.parquet import read_table
from geo_assets.store.schemas import (
    ATTACK_SCHEMA, BLUR_CHECK_CACHE_SCHEMA, BLUR_SCHEMA, CAPTION_SCHEMA, OCR_SCHEMA, RAW_IMAGES_SCHEMA,
)
from geo_assets.tables.incremental import constant, lookup, reuse_rows

ATTACK_TABLE = "gazetteer_attack"
LEGACY_TABLE = "attack_guesses"  # the table's name before tables took their asset's name
SECOND_ENGINE = "easyocr"
VARIANTS = ("unblurred", "blurred")
GUESS_COLUMNS = ("guess_lat", "guess_lon", "source", "matched", "error_km")
INPUT_COLUMNS = [f.name for f in ATTACK_SCHEMA if f.name not in GUESS_COLUMNS]
# A row's guess is a function of these (texts_json: of words_sha), the rule, the region and the attacker's code.
ROW_KEY = [c for c in INPUT_COLUMNS if c != "texts_json"]
READ_KEY = ["image_id", "variant", "engine", "image_sha256"]
READ_SCHEMA = pa.schema([ATTACK_SCHEMA.field(c) for c in READ_KEY + ["engine_id", "texts_json"]])


class AttackConfig(dg.Config):
    easyocr_max_test_images: int = 4
    """Test-split images per tile read by EasyOCR (both variants): the ones with the
    smallest sha256(image id), so the choice is a pure function of the tile's images."""
    rule: str = DEFAULT_RULE
    """Place-name rule (``geo_assets.attack.gazetteer.RULES``)."""


def attack_table_path(layout: StorageLayout, tile: str) -> Path:
    """``tables/gazetteer_attack/tile=<tile>/data.parquet``."""
    return layout.table_path(ATTACK_TABLE, tile)


def _texts(words_json: str | None) -> list[str]:
    return [str(d["text"]) for d in json.loads(words_json)] if words_json else []


def words_sha(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:24]


def _engine_name(engine_id: str) -> str:
    return engine_id.split(":", 1)[0]


def _pick_test_images(test_ids: list[str], n: int) -> list[str]:
    return sorted(test_ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[: max(0, n)]


def _with_texts(table: pa.Table, texts: list[list[str]]) -> pa.Table:
    """`table` with texts_json and words_sha of what was read."""
    return (table.append_column("texts_json", pa.array([json.dumps(t, ensure_ascii=False) for t in texts], pa.string()))
            .append_column("words_sha", pa.array([words_sha(t) for t in texts], pa.string())))


def _ok(table: pa.Table, sha: str, image_sha: pa.ChunkedArray) -> pa.Array:
    """Rows of an upstream table made from this version of the image, without error."""
    error = pc.fill_null(pc.not_equal(table["error"], ""), False)
    return pc.fill_null(pc.and_(pc.equal(table[sha], image_sha), pc.invert(error)), False)


def _primary_reads(layout, tile: str, images: pa.Table) -> pa.Table:
    """One row per (image, variant) the primary engine read: the words come from ocr_text
    (unblurred) and from the blur step's re-read of the blurred image; image order."""
    ocr = read_table(layout.table_path("ocr_text", tile), OCR_SCHEMA)
    blur = read_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA)
    caption = read_table(layout.table_path("captions", tile, "unblurred"), CAPTION_SCHEMA)
    splits = assign_splits(images["image_id"].to_pylist(), images["sequence_id"].to_pylist(), images["lat"].to_pylist(),
                           images["lon"].to_pylist(), SplitConfig())
    shared = pa.table({
        "image_id": images["image_id"], "sequence_id": pc.fill_null(images["sequence_id"], ""),
        "split": pa.array([str(x) for x in splits], pa.string()), "lat": images["lat"], "lon": images["lon"],
        "sha256": images["sha256"], "order": pa.array(np.arange(images.num_rows) * 2),
    })
    shared = lookup(shared, caption, ["image_id"], {"has_place_text": "has_place_text", "image_id": "caption_id"})
    reliant = pc.if_else(pc.is_valid(shared["caption_id"]), pc.fill_null(shared["has_place_text"], False), pa.scalar(None, pa.bool_()))
    shared = shared.append_column("text_reliant", reliant)
    parts = []
    for variant, table, engine_col, words_col in (("unblurred", ocr, "engine", "words_json"),
                                                  ("blurred", blur, "ocr_engine", "ocr_words_json")):
        part = lookup(shared, table, ["image_id"], {"sha256": "up_sha", "error": "error", engine_col: "engine_id",
                                                    words_col: "words"})
        # The variant's image: the raw one, or the blurred file.
        part = part.append_column("image_sha256", part["sha256"] if variant == "unblurred" else
                                  lookup(part.select(["image_id"]), blur, ["image_id"], {"blurred_sha256": "b"})["b"])
        part = part.filter(_ok(part, "up_sha", part["sha256"]))
        part = part.set_column(part.schema.get_field_index("order"), "order", pc.add(part["order"], int(variant == "blurred")))
        part = constant(part, "variant", variant).append_column(
            "engine", pa.array([_engine_name(e) for e in part["engine_id"].to_pylist()], pa.string()))
        parts.append(_with_texts(part, [_texts(w) for w in part["words"].to_pylist()]))
    both = pa.concat_tables(parts)
    return both.take(pc.sort_indices(both, [("order", "ascending")]))


def _second_reads(log, layout, tile: str, images: pa.Table, blur: pa.Table, stats: dict):
    """`compute` for the second engine's reads: the blur check's cached read of a blurred
    image, else an OCR read now (the engine built on the first one)."""
    check = read_table(layout.cache_path("blur_check", tile), BLUR_CHECK_CACHE_SCHEMA)
    check = check.filter(pc.equal(check["checker"], SECOND_ENGINE))

    def compute(missing: pa.Table) -> list[dict]:
        missing = lookup(missing, check, ["image_sha256"], {"words_json": "check_words"}, right_key=["blurred_sha256"])
        missing = lookup(missing, images, ["image_id"], {"path": "raw_path"})
        missing = lookup(missing, blur, ["image_id"], {"blurred_path": "blurred_path"})
        rows, engine = [], None
        for m in missing.to_pylist():  # the reads made now: a few per tile
            if m["variant"] == "blurred" and m["check_words"] is not None:
                texts, engine_id = _texts(m["check_words"]), f"{SECOND_ENGINE}:blur_check"
                stats["from_check"] += 1
            else:
                if engine is None:
                    from geo_assets.preprocess.ocr import make_ocr_engine

                    engine = make_ocr_engine(SECOND_ENGINE)
                path = layout.root / (m["raw_path"] if m["variant"] == "unblurred" else m["blurred_path"])
                t0 = time.perf_counter()
                texts, engine_id = [w.text for w in engine.read(load_bgr(path))], f"{engine.name}:{engine.version}"
                stats["ocr_seconds"] += time.perf_counter() - t0
                stats["reads"] += 1
                stats["read_ids"].add(m["image_id"])
            rows.append({**{k: m[k] for k in READ_KEY}, "engine_id": engine_id, "texts_json": json.dumps(texts, ensure_ascii=False)})
        log.info(f"{SECOND_ENGINE} on {tile}: {stats['reads']} reads in {stats['ocr_seconds']:.1f}s")
        return rows

    return compute


def _locate_rows(rule: str, region):
    """`compute` for the attack table: the attacker's guess from each row's texts."""

    def compute(missing: pa.Table) -> pa.Table:
        guesses = {c: [] for c in GUESS_COLUMNS}
        for texts_json, lat, lon in zip(*(missing[c].to_pylist() for c in ("texts_json", "lat", "lon"))):
            guess = locate(json.loads(texts_json), region=region, rule=rule)
            values = (None,) * 5 if guess is None else (
                guess.lat, guess.lon, guess.source, guess.matched, round(float(haversine_km(lat, lon, guess.lat, guess.lon)), 4))
            for c, v in zip(GUESS_COLUMNS, values):
                guesses[c].append(v)
        for c, v in guesses.items():
            missing = missing.append_column(c, pa.array(v, ATTACK_SCHEMA.field(c).type))
        return missing

    return compute


def _summary(rows: pa.Table, second_ids: set[str]) -> dict:
    """Per engine/variant: rows, guesses, within 1/10/25 km. The primary engine is also
    summarised on the images the second engine read."""
    groups: dict[str, list] = {}
    for image_id, engine, variant, err in zip(*(rows[c].to_pylist() for c in ("image_id", "engine", "variant", "error_km"))):
        groups.setdefault(f"{engine}/{variant}", []).append(err)
        if image_id in second_ids and engine != SECOND_ENGINE:
            groups.setdefault(f"{engine}/{variant} ({SECOND_ENGINE} images)", []).append(err)
    summary = {}
    for key in sorted(groups):
        errs = [e for e in groups[key] if e is not None]
        summary[key] = {"rows": len(groups[key]), "guessed": len(errs), "within_1km": sum(e <= 1 for e in errs),
                        "within_10km": sum(e <= 10 for e in errs), "within_25km": sum(e <= 25 for e in errs)}
    return summary


def materialize_gazetteer_attack(context: dg.AssetExecutionContext, config: AttackConfig, storage: StorageResource) -> dg.MaterializeResult:
    if config.rule not in RULES:
        raise dg.Failure(f"unknown attack rule {config.rule!r}; choose one of {', '.join(RULES)}")
    tile = tile_partition_of(context)
    layout = storage.layout()
    region = GeoSettings.from_env().region
    started = time.perf_counter()
    with partition_lock(layout.root, "gazetteer_attack", tile):
        images = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA)
        out_path = attack_table_path(layout, tile)
        previous = read_previous(out_path, ATTACK_SCHEMA)
        if not previous.num_rows:  # until this tile's table has its new name, the old one's reads are reused
            previous = read_table(layout.root / "tables" / LEGACY_TABLE / out_path.parent.name / out_path.name, ATTACK_SCHEMA)
        primary = _primary_reads(layout, tile, images)
        # The second engine on a deterministic sample of the test split (both variants read).
        test = primary.filter(pc.equal(primary["split"], "test"))
        counts = Counter(test["image_id"].to_pylist())
        test_ids = [i for i in dict.fromkeys(test["image_id"].to_pylist()) if counts[i] == len(VARIANTS)]
        primary_names = primary.filter(pc.equal(primary["variant"], "unblurred"))["engine"].to_pylist()[:1]
        chosen = _pick_test_images(test_ids, config.easyocr_max_test_images) if primary_names != [SECOND_ENGINE] else []
        positions = {(i, v): n for n, (i, v) in enumerate(zip(primary["image_id"].to_pylist(), primary["variant"].to_pylist()))}
        second = constant(primary.take(pa.array([positions[(i, v)] for i in chosen for v in VARIANTS], pa.int64()))
                          .drop_columns(["engine", "engine_id", "texts_json", "words_sha"]), "engine", SECOND_ENGINE)
        stats = {"reads": 0, "from_check": 0, "ocr_seconds": 0.0, "read_ids": set()}
        reads = reuse_rows(previous, second, READ_KEY, READ_SCHEMA, _second_reads(
            context.log, layout, tile, images, read_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA), stats))
        second = _with_texts(second.append_column("engine_id", reads.table["engine_id"]),
                             [json.loads(t) for t in reads.table["texts_json"].to_pylist()])
        wanted = pa.concat_tables([constant(t.select([c for c in INPUT_COLUMNS if c != "rule"]), "rule", config.rule)
                                   for t in (primary, second)])
        result = update_table(out_path, ATTACK_SCHEMA, wanted, ROW_KEY, _locate_rows(config.rule, region), old=previous,
                              stamp=f"{ATTACKER_VERSION}|region={region}")
        table = result.table
        refresh_views(layout, (ATTACK_TABLE,))
        summary = _summary(table, set(chosen))
        sources = Counter(f"{e}/{v}:{s}" for e, v, s in zip(*(table[c].to_pylist() for c in ("engine", "variant", "source"))) if s)
        return dg.MaterializeResult(
            metadata={
                "rows": table.num_rows,
                **result.counts(),
                "rule": config.rule,
                "images": images.num_rows,
                "test_images": len(test_ids),
                f"{SECOND_ENGINE}_images_chosen": len(chosen),
                f"{SECOND_ENGINE}_images_read": len(stats["read_ids"]),
                f"{SECOND_ENGINE}_reads": stats["reads"],
                f"{SECOND_ENGINE}_reads_from_blur_check": stats["from_check"],
                f"{SECOND_ENGINE}_rows_reused": reads.rows_reused,
                f"{SECOND_ENGINE}_seconds": round(stats["ocr_seconds"], 3),
                "seconds": round(time.perf_counter() - started, 3),
                "by_engine_variant": dg.MetadataValue.json(summary),
                "guesses": records_table([{"engine/variant": k, **v} for k, v in summary.items()]),
                "sources": dg.MetadataValue.json(dict(sources)),
            },
            data_version=data_version_of_columns(table, ["image_id", "variant", "engine", "words_sha", "rule", "guess_lat", "guess_lon"]),
        )


def build_gazetteer_attack(tiles: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @tile_asset(
        tiles,
        deps=["raw_images", "ocr_text", "blurred_images", "captions"],
        code_version=ATTACKER_VERSION,
        group_name="attack",
        kinds={"python", "parquet"},
        schema=ATTACK_SCHEMA,
    )
    def gazetteer_attack(context: dg.AssetExecutionContext, config: AttackConfig, storage: StorageResource):
        """The gazetteer attacker on every image's OCR text, unblurred and blurred: printed
        coordinates, else the place the rule picks, else abstain. One row per (image,
        variant, engine) in its table, with the error in km."""
        events = [materialize_gazetteer_attack(context, config, storage)]
        yield from with_row_count(events, storage, ATTACK_TABLE, context.partition_key)

    return gazetteer_attack


defs = tile_definitions(build_gazetteer_attack)
