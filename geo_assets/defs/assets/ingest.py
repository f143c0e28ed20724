"""`raw_images`: street images per tile, pulled incrementally from a Mapillary-compatible API or a
folder of geotagged photos."""

import time
from collections import Counter

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from geo_assets.defs.metadata import counts_md, data_version_of, preview_md
from geo_assets.defs.tile_assets import tile_asset, tile_definitions, with_row_count
from geo_assets.defs.resources import ImageSourceResource, StorageResource
from geo_assets.geo.bbox import in_region
from geo_assets.geo.tiles import Tile, tiles_for_region
from geo_assets.folder.scan import FolderMissingError
from geo_assets.ingest.folder_pull import pull_folder_tile
from geo_assets.ingest.pull import DUPLICATE_DISTANCE_M, pull_tile
from geo_assets.store.schemas import RAW_IMAGES_SCHEMA, RAW_REJECTS_SCHEMA
from geo_assets.mapillary.errors import MapillaryUnavailableError
from geo_assets.defs.partitions import tile_partition_of
from geo_assets.store.locks import partition_lock, remove_orphan_temp_files, remove_unlisted_images
from geo_assets.config.settings import GeoSettings
from geo_assets.store.parquet import read_table, write_table


class PullConfig(dg.Config):
    images_per_tile: int | None = None
    """Target number of stored images per tile: the data-set size setting (None:
    GEO_ASSETS_IMAGES_PER_TILE, default 90)."""
    max_new_per_run: int = 0
    """Cap on images added by one run (0: up to images_per_tile)."""
    duplicate_distance_m: float = DUPLICATE_DISTANCE_M
    """Seed 003's duplicate filter: reject an image this close (metres) to one already
    kept in the same sequence (0: off). Sequence neighbours are 5-30 m apart."""


def _cursor(images: pa.Table, rejects: pa.Table) -> int | None:
    values = [v for v in (pc.max(images["captured_at"]).as_py() if images.num_rows else None,
                          pc.max(rejects["captured_at"]).as_py() if rejects.num_rows else None) if v is not None]
    return max(values) if values else None


def pull_raw_images(
    context: dg.AssetExecutionContext, config: PullConfig, storage: StorageResource, image_source: ImageSourceResource
):
    tile = Tile.from_key(tile_partition_of(context))
    settings = GeoSettings.from_env()
    images_per_tile = config.images_per_tile if config.images_per_tile is not None else settings.images_per_tile
    layout = storage.layout()
    with partition_lock(layout.root, "raw_images", tile.key):
        remove_orphan_temp_files(layout.raw_image_path(tile.key, 'x').parent)
        images_path = layout.table_path("raw_images", tile.key)
        rejects_path = layout.table_path("raw_rejects", tile.key)
        images = read_table(images_path, RAW_IMAGES_SCHEMA)
        rejects = read_table(rejects_path, RAW_REJECTS_SCHEMA)
        image_folder = layout.raw_image_path(tile.key, "x").parent
        orphans = remove_unlisted_images(image_folder, set(images["image_id"].to_pylist()))
        if orphans:
            context.log.warning(f"tile {tile.key}: removed {len(orphans)} image files no table row lists "
                                "(left by a pull that failed or was killed); they are fetched again")

        wanted = max(0, images_per_tile - images.num_rows)
        if config.max_new_per_run > 0:
            wanted = min(wanted, config.max_new_per_run)
        started = time.perf_counter()
        new_rows: list[dict] = []
        new_rejects: list[dict] = []
        stats: dict = {}
        outage: MapillaryUnavailableError | None = None
        if wanted:
            known_positions: dict[str, list[tuple[float, float]]] = {}
            for seq, la, lo in zip(images["sequence_id"].to_pylist(), images["lat"].to_pylist(), images["lon"].to_pylist()):
                if seq:
                    known_positions.setdefault(seq, []).append((la, lo))
            try:
                if image_source.kind == "folder":
                    result = pull_folder_tile(
                        image_source.folder_root(),
                        tile,
                        layout,
                        tiles=tiles_for_region(settings.region, settings.tile_size),
                        known_ids=set(images["image_id"].to_pylist()) | set(rejects["image_id"].to_pylist()),
                        known_sha256=set(images["sha256"].to_pylist()),
                        max_new=wanted,
                        source=image_source.source_name,
                        log=context.log,
                        known_positions=known_positions,
                        duplicate_distance_m=config.duplicate_distance_m,
                    )
                else:
                    result = pull_tile(
                        image_source.client(),
                        tile,
                        layout,
                        known_ids=set(images["image_id"].to_pylist()) | set(rejects["image_id"].to_pylist()),
                        known_sha256=set(images["sha256"].to_pylist()),
                        start_captured_at=_cursor(images, rejects),
                        max_new=wanted,
                        source=image_source.source_name,
                        log=context.log,
                        known_positions=known_positions,
                        duplicate_distance_m=config.duplicate_distance_m,
                    )
            except FolderMissingError as exc:
                raise dg.Failure(str(exc)) from None
            except MapillaryUnavailableError as exc:
                result = getattr(exc, "partial", None)
                if result is None:
                    remove_unlisted_images(image_folder, set(images["image_id"].to_pylist()))
                    raise
                outage = exc  # store what was walked before the outage, then fail the run
            except BaseException:
                # Whatever failed, no image file outlives the pull without its table row.
                remove_unlisted_images(image_folder, set(images["image_id"].to_pylist()))
                raise
            new_rows, new_rejects, stats = result.rows, result.rejects, result.stats
        seconds = time.perf_counter() - started

        if new_rows:
            images = pa.concat_tables([images, pa.Table.from_pylist(new_rows, schema=RAW_IMAGES_SCHEMA)])
            write_table(images_path, images)
        elif not images_path.exists():
            write_table(images_path, images)
        if new_rejects:
            rejects = pa.concat_tables([rejects, pa.Table.from_pylist(new_rejects, schema=RAW_REJECTS_SCHEMA)])
            write_table(rejects_path, rejects)
        elif not rejects_path.exists():
            write_table(rejects_path, rejects)

        if outage is not None:
            raise dg.Failure(
                description=f"tile {tile.key}: image downloads look like an outage; stored {len(new_rows)} new images "
                            f"and {len(new_rejects)} rejects walked before it; the next run resumes there. {outage}",
                metadata={"new_images": len(new_rows), "new_rejects": len(new_rejects)},
            )

        ids = images["image_id"].to_pylist()
        shas = images["sha256"].to_pylist()
        lats, lons = images["lat"].to_pylist(), images["lon"].to_pylist()
        outside = sum(1 for la, lo in zip(lats, lons) if not (tile.bbox.contains(la, lo) and in_region(la, lo, settings.region)))
        yield dg.AssetCheckResult(
            check_name="unique_image_ids",
            passed=len(set(ids)) == len(ids) and len(set(shas)) == len(shas),
            metadata={"rows": len(ids), "distinct_ids": len(set(ids)), "distinct_sha256": len(set(shas))},
        )
        yield dg.AssetCheckResult(check_name="coordinates_in_region", passed=outside == 0, metadata={"outside": outside})

        preview_rows = new_rows[:4] if new_rows else [{"path": p} for p in images["path"].to_pylist()[:4]]
        yield dg.MaterializeResult(
            metadata={
                "new_images": len(new_rows),
                "total_images": images.num_rows,
                "new_rejects": len(new_rejects),
                "rejected_by_reason": counts_md(Counter(r["reason"] for r in new_rejects)),
                "total_rejects": rejects.num_rows,
                "pull_seconds": round(seconds, 3),
                "images_per_second": round(len(new_rows) / seconds, 2) if seconds > 0 and new_rows else 0.0,
                "api_requests": int(stats.get("requests", 0)),
                "api_retries": int(stats.get("retries", 0)),
                # the search stopped at max_search_requests: listed (and stored) only part of the tile
                "search_incomplete": bool(stats.get("search_capped", False)),
                "source": image_source.source_name,
                # Folder source: files opened this pull (headers of new or changed files, then
                # whole files of new images); an unchanged folder opens none.
                **({"folder_files": int(stats.get("files", 0)), "folder_header_reads": int(stats.get("header_reads", 0)),
                    "folder_content_reads": int(stats.get("content_reads", 0))} if image_source.kind == "folder" else {}),
                "table": dg.MetadataValue.path(str(images_path)),
                "preview": preview_md([layout.root / r["path"] for r in preview_rows]),
            },
            data_version=data_version_of(f"{i}:{s}" for i, s in zip(ids, shas)),
        )


def build_raw_images(tiles: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @tile_asset(
        tiles,
        automation=None,  # pulled by the daily schedule, not by automation
        code_version="raw_images-v2",
        group_name="ingest",
        kinds={"python", "parquet"},
        schema=RAW_IMAGES_SCHEMA,
        check_specs=[
            dg.AssetCheckSpec("unique_image_ids", asset="raw_images", description="no image id or sha256 stored twice"),
            dg.AssetCheckSpec("coordinates_in_region", asset="raw_images", description="every image lies in its tile and the region"),
        ],
    )
    def raw_images(
        context: dg.AssetExecutionContext, config: PullConfig, storage: StorageResource, image_source: ImageSourceResource
    ):
        """Images of one tile: only ids never seen are fetched (cursor = newest captured_at
        stored), validated, and appended; rejected items are kept with their reason."""
        events = pull_raw_images(context, config, storage, image_source)
        yield from with_row_count(events, storage, "raw_images", context.partition_key)

    return raw_images


defs = tile_definitions(build_raw_images)
