"""Every table (and stored image) an asset reads comes from an asset upstream of it in the
Definitions' graph: recorded on real materializations of every tile asset, a model partition
and the privacy report (store/reads.py records what the table reader, the image reader and
the query connection actually read). A read the graph does not declare would let Dagster run
the reader before, or without, its writer."""

import dagster as dg
import pyarrow as pa
import pytest

from geo_assets.definitions import MODEL_ASSET_NAMES, REPORT_ASSET_NAMES, TILE_ASSET_NAMES, defs
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key, tile_keys, tile_partitions_for
from geo_assets.defs.resources import StorageResource
from geo_assets.run import execution
from geo_assets.store import reads
from geo_assets.store.catalog import query_connection
from geo_assets.store.layout import TABLES, StorageLayout
from geo_assets.store.parquet import read_table, write_table
from geo_assets.store.schemas import CAPTION_SCHEMA, RAW_IMAGES_SCHEMA

# Tables not named after the asset that writes them.
TABLE_WRITERS = {"raw_rejects": "raw_images", "attack_guesses": "gazetteer_attack"}
IMAGE_WRITERS = {"raw": "raw_images", "blurred": "blurred_images"}


def assets_read(layout: StorageLayout, paths: list[str]) -> set[str]:
    """The assets whose stored tables or images these recorded paths are (caches and state
    files belong to the asset that keeps them, so they are not counted)."""
    root = str(layout.root).rstrip("/") + "/"
    found = set()
    for path in paths:
        if not path.startswith(root):
            continue
        parts = path[len(root):].split("/")
        if parts[0] == "tables" and len(parts) > 1 and parts[1] in TABLES:
            found.add(TABLE_WRITERS.get(parts[1], parts[1]))
        elif parts[0] == "images" and len(parts) > 1 and parts[1] in IMAGE_WRITERS:
            found.add(IMAGE_WRITERS[parts[1]])
    return found


def undeclared(graph, asset: str, read: set[str]) -> set[str]:
    """Assets `asset` read that are neither itself nor one of its parents in `graph`."""
    parents = {p.to_user_string() for p in graph.get(dg.AssetKey(asset)).parent_keys}
    return read - parents - {asset}


def _recorded(run) -> list[str]:
    with reads.recording() as seen:
        result = run()
    assert result.success
    return seen


@pytest.mark.slow
def test_every_asset_reads_only_its_upstream_assets(dagster_resources):
    layout = dagster_resources["storage"].layout()
    graph = defs().resolve_asset_graph()
    tile = tile_keys()[0]
    key = model_partition_key("unblurred", "0.1")
    read: dict[str, set[str]] = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.1"])
        # One asset per run, so every read recorded during a run is that asset's.
        for asset in TILE_ASSET_NAMES:
            seen = _recorded(lambda: execution.materialize_tile(
                instance, dagster_resources, tile, selection=[asset], images_per_tile=16, check_sample=1,
                easyocr_test_images=1))
            read[asset] = assets_read(layout, seen)
        for asset in MODEL_ASSET_NAMES:
            config = {"ops": {"geolocator_model": {"config": {"max_epochs": 2}}}} if asset == "geolocator_model" else None
            seen = _recorded(lambda: execution.materialize([asset], instance=instance, resources=dagster_resources,
                                                           partition_key=key, run_config=config))
            read[asset] = assets_read(layout, seen)
        for asset in REPORT_ASSET_NAMES:
            read[asset] = assets_read(layout, _recorded(lambda: execution.materialize(
                [asset], instance=instance, resources=dagster_resources)))

    print({asset: sorted(r) for asset, r in read.items()})
    assert {asset: undeclared(graph, asset, r) for asset, r in read.items()} == {asset: set() for asset in read}
    # The recorder saw the reads that must happen (so an empty record cannot pass for a clean one).
    assert "raw_images" in read["ocr_text"] and "ocr_text" in read["blurred_images"]
    assert {"blurred_images", "captions"} <= read["embeddings"]
    assert "embeddings" in read["geolocator_model"] and "gazetteer_attack" in read["privacy_report"]


def test_an_undeclared_read_is_caught(dagster_resources):
    """An asset that reads the captions table but declares only raw_images fails the comparison."""
    tiles = tile_partitions_for()

    @dg.asset(partitions_def=tiles, deps=["raw_images"])
    def sneaky_reader(context: dg.AssetExecutionContext, storage: StorageResource) -> None:
        layout = storage.layout()
        read_table(layout.table_path("raw_images", context.partition_key), RAW_IMAGES_SCHEMA)
        read_table(layout.table_path("captions", context.partition_key), CAPTION_SCHEMA)

    layout = dagster_resources["storage"].layout()
    assets = [sneaky_reader, *execution.all_assets()]
    graph = dg.Definitions(assets=assets, resources=dagster_resources).resolve_asset_graph()
    with dg.instance_for_test() as instance:
        seen = _recorded(lambda: dg.materialize(assets, selection=["sneaky_reader"], partition_key=tile_keys()[0],
                                                instance=instance, resources=dagster_resources))
    read = assets_read(layout, seen)
    assert read == {"raw_images", "captions"}
    assert undeclared(graph, "sneaky_reader", read) == {"captions"}


def test_queries_record_the_tables_they_name(tmp_path):
    """The query connection reports the tables a statement names (parameters need no values),
    and only while something records."""
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    write_table(layout.table_path("captions", "t1"), pa.table({"image_id": ["a"], "variant": ["unblurred"]}))
    write_table(layout.table_path("attack_guesses", "t1"), pa.table({"image_id": ["a"]}))
    with query_connection(layout) as con:
        assert con.execute("SELECT count(*) FROM captions").fetchone() == (1,)  # not recording: plain connection
    with reads.recording() as seen, query_connection(layout) as con:
        con.execute("WITH g AS (SELECT image_id FROM attack_guesses) SELECT c.image_id FROM captions c "
                    "JOIN g USING (image_id) WHERE c.variant = ?", ["unblurred"]).fetchall()
        con.sql("SELECT table_name FROM information_schema.tables").fetchall()
    assert assets_read(layout, seen) == {"captions", "gazetteer_attack"}
