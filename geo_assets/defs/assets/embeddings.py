"""`embeddings` per tile: caption and image encodings and their cross-attention fusion
for both variants, one Parquet file per (tile, variant), visible in DuckDB."""

import hashlib

import cv2
import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geo_assets.config.pools import gpu_step_kwargs
from geo_assets.defs.incremental import data_version_of_columns, update_table
from geo_assets.defs.tile_assets import tile_asset, tile_definitions, with_row_count
from geo_assets.defs.resources import EncoderResource, StorageResource
from geo_assets.embed.fusion import CrossAttentionFusion
from geo_assets.embed.neighbours import nearest_neighbours, neighbour_distance_summary
from geo_assets.embed.rows import VECTOR_COLUMNS, encode_batch
from geo_assets.config.settings import BLUR_VARIANTS
from geo_assets.store.catalog import refresh_views
from geo_assets.store.images import load_bgr
from geo_assets.defs.partitions import tile_partition_of
from geo_assets.store.locks import partition_lock
from geo_assets.store.parquet import read_table
from geo_assets.store.schemas import BLUR_SCHEMA, CAPTION_SCHEMA, RAW_IMAGES_SCHEMA, embedding_schema
from geo_assets.tables.incremental import constant, counts_of, lookup



class EmbeddingConfig(dg.Config):
    batch_size: int = 32


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _wanted(layout, tile: str, variant: str, images: pa.Table, encoder_key: str) -> pa.Table:
    """One row per caption of `variant` whose image is in the tile, in the captions' order:
    the key (image, caption text, encoders) and what encoding it needs."""
    caps = read_table(layout.table_path("captions", tile, variant), CAPTION_SCHEMA)
    caps = lookup(caps, images, ["image_id"], {"lat": "lat", "lon": "lon", "sequence_id": "sequence_id", "path": "raw_path",
                                                "sha256": "raw_sha256"})
    caps = caps.filter(pc.is_valid(caps["raw_sha256"]))
    if variant != "unblurred":
        blur = read_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA)
        caps = lookup(caps, blur, ["image_id"], {"blurred_path": "blurred_path"})
    paths = caps["raw_path"] if variant == "unblurred" else caps["blurred_path"]
    caption_sha = [_sha(c + "\x00" + o) for c, o in zip(caps["caption"].to_pylist(), caps["ocr_clean"].to_pylist())]
    wanted = pa.table({
        "image_id": caps["image_id"], "variant": pa.array([variant] * caps.num_rows, pa.string()),
        "lat": caps["lat"], "lon": caps["lon"], "sequence_id": pc.fill_null(caps["sequence_id"], ""),
        "image_sha256": caps["image_sha256"], "caption_sha256": pa.array(caption_sha, pa.string()),
        "caption": caps["caption"], "ocr_clean": caps["ocr_clean"], "path": paths,
    })
    return constant(wanted, "encoder_key", encoder_key)


def _embedding_rows(log, layout, variant: str, text_encoder, image_encoder, fusion, batch_size: int, seconds: dict):
    """`compute` for embeddings: caption, OCR-text and image encodings and their fusion, in batches."""

    def compute(missing: pa.Table) -> list[dict]:
        rows = []
        todo = missing.to_pylist()  # the rows encoded now: one dict each
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for r in batch:
                if not r["path"]:
                    raise ValueError(f"no {variant} image for {r['image_id']}; materialize blurred_images first")
            rgb = [cv2.cvtColor(load_bgr(layout.root / r["path"]), cv2.COLOR_BGR2RGB) for r in batch]
            enc = encode_batch(text_encoder, image_encoder, fusion, [r["caption"] for r in batch],
                               [r["ocr_clean"] for r in batch], rgb)
            for name, took in enc.seconds.items():
                seconds[name] = seconds.get(name, 0.0) + took
            rows += [{**r, **enc.row(i)}
                     for i, r in enumerate(batch)]
            log.info(f"{variant}: encoded {min(start + batch_size, len(todo))}/{len(todo)}")
        return rows

    return compute


def _non_finite_vectors(table: pa.Table) -> int:
    """Vectors (row x column) holding a NaN or an infinity."""
    bad = 0
    if not table.num_rows:  # a tile with no images (reshape of an empty array to (0, -1) fails)
        return 0
    for col in VECTOR_COLUMNS:
        values = table[col].combine_chunks()
        flat = values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), -1)
        bad += int((~np.isfinite(flat)).any(axis=1).sum())
    return bad


def materialize_embeddings(context: dg.AssetExecutionContext, config: EmbeddingConfig, storage: StorageResource, encoders: EncoderResource):
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "embeddings", tile):
        images = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA)
        text_encoder, image_encoder = encoders.text_encoder(), encoders.image_encoder()
        fusion = CrossAttentionFusion(text_encoder.dim, image_encoder.dim)
        encoder_key = f"{text_encoder.encoder_id}|{image_encoder.encoder_id}|{fusion.fusion_id}"
        schema = embedding_schema(text_encoder.dim, image_encoder.dim, fusion.fused_dim)
        seconds: dict = {}
        # A table of other vector sizes holds nothing to reuse: it is rebuilt.
        results = [update_table(layout.table_path("embeddings", tile, variant), schema,
                                _wanted(layout, tile, variant, images, encoder_key),
                                ["image_id", "image_sha256", "caption_sha256", "encoder_key"],
                                _embedding_rows(context.log, layout, variant, text_encoder, image_encoder, fusion,
                                                config.batch_size, seconds),
                                rebuild_incompatible=True, sort_by=["image_id"])
                   for variant in BLUR_VARIANTS]
        table = pa.concat_tables([r.table for r in results])
        refresh_views(layout, ("embeddings", "captions", "raw_images"))

        yield dg.AssetCheckResult(
            check_name="embeddings_finite_and_sized", passed=(bad := _non_finite_vectors(table)) == 0,
            metadata={"rows": table.num_rows, "non_finite_vectors": bad, "text_dim": text_encoder.dim,
                      "image_dim": image_encoder.dim, "fused_dim": fusion.fused_dim},
        )
        counts = counts_of(results)
        n = counts["rows_computed"]
        sanity = _neighbour_sanity(table)
        yield dg.MaterializeResult(
            metadata={
                "rows": table.num_rows,
                **counts,
                "text_encoder": text_encoder.encoder_id,
                "image_encoder": image_encoder.encoder_id,
                "fusion": fusion.fusion_id,
                "dims": f"text {text_encoder.dim}, image {image_encoder.dim}, fused {fusion.fused_dim}",
                **{f"{stage}_rows_per_s": round(n / seconds[f"{stage}_s"], 1) if seconds.get(f"{stage}_s") else 0.0
                   for stage in ("text", "image", "fusion")},
                "nearest_neighbours": dg.MetadataValue.md(sanity["table"]),
                "nn_km_vs_random_km": dg.MetadataValue.md(sanity["summary"]),
            },
            data_version=data_version_of_columns(table, ["image_id", "variant", "image_sha256", "caption_sha256", "encoder_key"]),
        )


def _vectors(table: pa.Table, col: str) -> np.ndarray:
    values = table[col].combine_chunks()
    return values.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(values), -1)


def _neighbour_sanity(rows: pa.Table, queries: int = 3, k: int = 3) -> dict:
    """Within this tile: for a few unblurred images, the closest images by fused vector and
    their distance on the ground; and, per variant and vector, the median km to the nearest
    neighbour against the median km to a random image (ratio < 1: the vectors carry place)."""
    table = ["| image | neighbour | cosine | km |", "|---|---|---:|---:|"]
    summary = ["| variant | vector | rows | median km to nearest | median km to random | ratio |",
               "|---|---|---:|---:|---:|---:|"]
    for variant in BLUR_VARIANTS:
        vrows = rows.filter(pc.equal(rows["variant"], variant))
        if vrows.num_rows < 2:
            continue
        lat, lon, ids = vrows["lat"].to_pylist(), vrows["lon"].to_pylist(), vrows["image_id"].to_pylist()
        for col in ("text_emb", "image_emb", "fused"):
            s = neighbour_distance_summary(_vectors(vrows, col), lat, lon)
            summary.append(f"| {variant} | {col} | {s['rows']} | {s['median_nn_km']} | {s['median_random_km']} | {s['ratio']} |")
        if variant == "unblurred":
            for nb in nearest_neighbours(_vectors(vrows, "fused"), lat, lon, range(min(queries, vrows.num_rows)), k=k):
                table.append(f"| {ids[nb.query]} | {ids[nb.neighbour]} | {nb.cosine:.3f} | {nb.km:.1f} |")
    return {"table": "\n".join(table), "summary": "\n".join(summary)}


def build_embeddings(tiles: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @tile_asset(
        tiles,
        deps=["raw_images", "blurred_images", "captions"],
        code_version="embeddings-v2",
        group_name="embeddings",
        kinds={"python", "pytorch", "parquet", "duckdb"},
        **gpu_step_kwargs(),
        check_specs=[dg.AssetCheckSpec("embeddings_finite_and_sized", asset="embeddings", blocking=True,
                                       description="no NaN/inf and the expected dimensions; blocking, so a "
                                                   "bad embedding stops training")],
    )
    def embeddings(context: dg.AssetExecutionContext, config: EmbeddingConfig, storage: StorageResource, encoders: EncoderResource):
        """Text CLS, image CLS and the fused vector per (image, variant). Rows whose image,
        caption and encoders are unchanged are kept; only new ones are encoded."""
        events = materialize_embeddings(context, config, storage, encoders)
        yield from with_row_count(events, storage, "embeddings", context.partition_key)

    return embeddings


defs = tile_definitions(build_embeddings)
