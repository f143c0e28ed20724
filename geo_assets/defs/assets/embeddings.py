"""`embeddings` per tile: caption and image encodings and their cross-attention fusion
for both variants, one Parquet file per (tile, variant), visible in DuckDB."""

import hashlib

import cv2
import dagster as dg
import numpy as np
import pyarrow as pa

from geo_assets.config.pools import gpu_step_kwargs
from geo_assets.defs.metadata import data_version_of
from geo_assets.defs.tile_assets import tile_asset, tile_definitions, with_row_count
from geo_assets.defs.resources import EncoderResource, StorageResource
from geo_assets.embed.fusion import CrossAttentionFusion
from geo_assets.embed.neighbours import nearest_neighbours, neighbour_distance_summary
from geo_assets.embed.rows import encode_batch
from geo_assets.config.settings import BLUR_VARIANTS
from geo_assets.store.catalog import refresh_views
from geo_assets.store.images import load_bgr
from geo_assets.defs.partitions import tile_partition_of
from geo_assets.store.locks import partition_lock
from geo_assets.store.parquet import read_table, rows_by, write_table
from geo_assets.store.schemas import CAPTION_SCHEMA, RAW_IMAGES_SCHEMA, embedding_schema


class EmbeddingConfig(dg.Config):
    batch_size: int = 32


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def materialize_embeddings(context: dg.AssetExecutionContext, config: EmbeddingConfig, storage: StorageResource, encoders: EncoderResource):
    tile = tile_partition_of(context)
    layout = storage.layout()
    with partition_lock(layout.root, "embeddings", tile):
        images = rows_by(read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA), "image_id")
        text_encoder, image_encoder = encoders.text_encoder(), encoders.image_encoder()
        fusion = CrossAttentionFusion(text_encoder.dim, image_encoder.dim)
        encoder_key = f"{text_encoder.encoder_id}|{image_encoder.encoder_id}|{fusion.fusion_id}"
        schema = embedding_schema(text_encoder.dim, image_encoder.dim, fusion.fused_dim)

        stats: dict = {"encoded": 0, "reused": 0, "text_s": 0.0, "image_s": 0.0, "fusion_s": 0.0}
        all_rows = []
        for variant in BLUR_VARIANTS:
            caps = read_table(layout.table_path("captions", tile, variant), CAPTION_SCHEMA).to_pylist()
            out_path = layout.table_path("embeddings", tile, variant)
            old = read_table(out_path, schema) if out_path.exists() else schema.empty_table()
            try:
                old_rows = {r["image_id"]: r for r in old.to_pylist()} if old.schema.equals(schema) else {}
            except Exception:
                old_rows = {}
            rows, todo = [], []
            for cap in caps:
                img = images.get(cap["image_id"])
                if img is None:
                    continue
                key = (cap["image_sha256"], _sha(cap["caption"] + "\x00" + cap["ocr_clean"]), encoder_key)
                prev = old_rows.get(cap["image_id"])
                if prev is not None and (prev["image_sha256"], prev["caption_sha256"], prev["encoder_key"]) == key:
                    rows.append(prev)
                else:
                    todo.append((cap, img, key))
            stats["reused"] += len(rows)
            blur_paths = None
            for start in range(0, len(todo), config.batch_size):
                batch = todo[start : start + config.batch_size]
                if variant == "blurred" and blur_paths is None:
                    from geo_assets.store.schemas import BLUR_SCHEMA
                    blur_paths = {r["image_id"]: r["blurred_path"] for r in read_table(layout.table_path("blurred_images", tile), BLUR_SCHEMA).to_pylist()}
                paths = [img["path"] if variant == "unblurred" else blur_paths[cap["image_id"]] for cap, img, _ in batch]
                rgb = [cv2.cvtColor(load_bgr(layout.root / p), cv2.COLOR_BGR2RGB) for p in paths]
                enc = encode_batch(text_encoder, image_encoder, fusion, [cap["caption"] for cap, _, _ in batch],
                                   [cap["ocr_clean"] for cap, _, _ in batch], rgb)
                for name, took in enc.seconds.items():
                    stats[name] += took
                for i, (cap, img, key) in enumerate(batch):
                    rows.append({
                        "image_id": cap["image_id"], "variant": variant, "lat": img["lat"], "lon": img["lon"],
                        "sequence_id": img.get("sequence_id") or "",
                        "image_sha256": key[0], "caption_sha256": key[1], "encoder_key": key[2],
                        **enc.row(i),
                    })
                stats["encoded"] += len(batch)
                context.log.info(f"{variant}: encoded {min(start + config.batch_size, len(todo))}/{len(todo)}")
            rows.sort(key=lambda r: r["image_id"])
            write_table(out_path, pa.Table.from_pylist(rows, schema=schema))
            all_rows += rows

        refresh_views(layout, ("embeddings", "captions", "raw_images"))

        bad = 0
        for r in all_rows:
            for col in ("text_emb", "image_emb", "fused", "ocr_emb"):
                if not np.all(np.isfinite(np.asarray(r[col], dtype=np.float32))):
                    bad += 1
        yield dg.AssetCheckResult(
            check_name="embeddings_finite_and_sized", passed=bad == 0,
            metadata={"rows": len(all_rows), "non_finite_vectors": bad, "text_dim": text_encoder.dim,
                      "image_dim": image_encoder.dim, "fused_dim": fusion.fused_dim},
        )
        n = stats["encoded"]
        sanity = _neighbour_sanity(all_rows)
        yield dg.MaterializeResult(
            metadata={
                "rows": len(all_rows),
                "encoded": n,
                "reused": stats["reused"],
                "text_encoder": text_encoder.encoder_id,
                "image_encoder": image_encoder.encoder_id,
                "fusion": fusion.fusion_id,
                "dims": f"text {text_encoder.dim}, image {image_encoder.dim}, fused {fusion.fused_dim}",
                "text_rows_per_s": round(n / stats["text_s"], 1) if stats["text_s"] else 0.0,
                "image_rows_per_s": round(n / stats["image_s"], 1) if stats["image_s"] else 0.0,
                "fusion_rows_per_s": round(n / stats["fusion_s"], 1) if stats["fusion_s"] else 0.0,
                "nearest_neighbours": dg.MetadataValue.md(sanity["table"]),
                "nn_km_vs_random_km": dg.MetadataValue.md(sanity["summary"]),
            },
            data_version=data_version_of(f"{r['image_id']}:{r['variant']}:{r['image_sha256']}:{r['caption_sha256']}:{r['encoder_key']}" for r in all_rows),
        )


def _neighbour_sanity(rows: list[dict], queries: int = 3, k: int = 3) -> dict:
    """Within this tile: for a few unblurred images, the closest images by fused vector and
    their distance on the ground; and, per variant and vector, the median km to the nearest
    neighbour against the median km to a random image (ratio < 1: the vectors carry place)."""
    table = ["| image | neighbour | cosine | km |", "|---|---|---:|---:|"]
    summary = ["| variant | vector | rows | median km to nearest | median km to random | ratio |",
               "|---|---|---:|---:|---:|---:|"]
    for variant in BLUR_VARIANTS:
        vrows = [r for r in rows if r["variant"] == variant]
        if len(vrows) < 2:
            continue
        lat, lon = [r["lat"] for r in vrows], [r["lon"] for r in vrows]
        for col in ("text_emb", "image_emb", "fused"):
            s = neighbour_distance_summary(np.stack([np.asarray(r[col], dtype=np.float32) for r in vrows]), lat, lon)
            summary.append(f"| {variant} | {col} | {s['rows']} | {s['median_nn_km']} | {s['median_random_km']} | {s['ratio']} |")
        if variant == "unblurred":
            fused = np.stack([np.asarray(r["fused"], dtype=np.float32) for r in vrows])
            for nb in nearest_neighbours(fused, lat, lon, range(min(queries, len(vrows))), k=k):
                table.append(f"| {vrows[nb.query]['image_id']} | {vrows[nb.neighbour]['image_id']} | {nb.cosine:.3f} | {nb.km:.1f} |")
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
