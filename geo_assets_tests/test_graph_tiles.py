"""Real Dagster materializations of the per-tile stages into a temp storage folder."""

import os

import dagster as dg
import pytest

from geo_assets.defs.assets.attack import attack_table_path
from geo_assets.defs.partitions import tile_keys
from geo_assets.defs.resources import CaptionerResource
from geo_assets.store.schemas import ATTACK_SCHEMA, RAW_IMAGES_SCHEMA
from geo_assets.store.catalog import query_connection
from geo_assets.store.parquet import read_table
from geo_assets_tests.dagster_helpers import checks, data_version, materialize_tile, metadata

TILES = tile_keys()

CAPTION_CALLS = {"n": 0}


class CountingCaptioner(CaptionerResource):
    """The real captioner, counting how many images it is asked to caption."""

    def captioner(self):
        inner = super().captioner()

        class Counting:
            captioner_id = inner.captioner_id

            def caption_batch(self, images):
                CAPTION_CALLS["n"] += len(images)
                return inner.caption_batch(images)

        return Counting()


@pytest.mark.slow
def test_two_tiles_end_to_end_then_rerun_touches_nothing(dagster_resources):
    resources = {**dagster_resources, "captioner": CountingCaptioner()}
    layout = resources["storage"].layout()
    with dg.instance_for_test() as instance:
        for tile in TILES[:2]:
            result = materialize_tile(instance, resources, tile, images_per_tile=8)
            assert result.success
            raw = metadata(result, "raw_images")
            assert raw["new_images"] == raw["total_images"] >= 6
            assert all(c.passed for name, c in checks(result).items() if name != "blur_covers_ground_truth_text")
            caps = metadata(result, "captions")
            assert caps["rows_computed"] == 2 * raw["total_images"] and caps["rows_reused"] == 0
            emb = metadata(result, "embeddings")
            assert emb["rows"] == 2 * raw["total_images"] and emb["rows_reused"] == 0
            assert len(emb["nearest_neighbours"].splitlines()) == 2 + 3 * 3  # header, rule, 3 images x 3 neighbours
            assert "| unblurred | fused |" in emb["nn_km_vs_random_km"]

        # Parquet and DuckDB agree.
        n_parquet = sum(read_table(layout.table_path("raw_images", t), RAW_IMAGES_SCHEMA).num_rows for t in TILES[:2])
        with query_connection(layout) as con:
            assert con.execute("SELECT count(*) FROM raw_images").fetchone()[0] == n_parquet
            assert con.execute("SELECT count(DISTINCT image_id) FROM embeddings WHERE variant='blurred'").fetchone()[0] == n_parquet
            dims = con.execute("SELECT len(fused), len(text_emb) FROM embeddings LIMIT 1").fetchone()
        assert dims[0] == 768 and dims[1] > 0

        first_version = data_version(instance, "raw_images", TILES[0])
        CAPTION_CALLS["n"] = 0
        files_before = sorted(p.name for p in (layout.root / "images" / "raw" / TILES[0]).iterdir())
        again = materialize_tile(instance, resources, TILES[0], images_per_tile=8)
        assert again.success
        assert metadata(again, "raw_images")["new_images"] == 0
        assert metadata(again, "ocr_text")["rows_computed"] == 0
        assert metadata(again, "blurred_images")["rows_computed"] == 0
        readability = checks(again)["blur_leaves_no_readable_words"]
        assert readability.passed and readability.metadata["images_checked"].value > 0
        assert readability.metadata["read_now"].value == 0, "the check's reads of unchanged images are cached"
        assert metadata(again, "captions")["rows_computed"] == 0
        assert CAPTION_CALLS["n"] == 0, "rerun must not call the captioner"
        assert metadata(again, "embeddings")["rows_computed"] == 0
        for asset in ("ocr_text", "blurred_images", "captions", "embeddings", "gazetteer_attack"):
            meta = metadata(again, asset)
            assert meta["rows_computed"] == 0 and meta["rows_reused"] > 0 and meta["seconds_per_row"] == 0.0, asset
        assert sorted(p.name for p in (layout.root / "images" / "raw" / TILES[0]).iterdir()) == files_before
        assert data_version(instance, "raw_images", TILES[0]) == first_version

        # A bigger target pulls only the new images; captions only for them.
        before = set(read_table(layout.table_path("raw_images", TILES[0]), RAW_IMAGES_SCHEMA)["image_id"].to_pylist())
        more = materialize_tile(instance, resources, TILES[0], images_per_tile=11)
        added = metadata(more, "raw_images")["new_images"]
        assert added >= 2
        assert metadata(more, "captions")["rows_computed"] == 2 * added
        assert CAPTION_CALLS["n"] == 2 * added
        # Every incremental asset computes exactly the new images' rows and reuses the rest.
        for asset, per_image in (("ocr_text", 1), ("blurred_images", 1), ("captions", 2), ("embeddings", 2)):
            meta = metadata(more, asset)
            assert (meta["rows_computed"], meta["rows_reused"]) == (per_image * added, per_image * len(before)), asset
        attack_ids = read_table(attack_table_path(layout, TILES[0]), ATTACK_SCHEMA)["image_id"].to_pylist()
        meta = metadata(more, "gazetteer_attack")
        assert meta["rows_computed"] == sum(i not in before for i in attack_ids) >= 2 * added
        assert meta["rows_reused"] == sum(i in before for i in attack_ids)


def test_failure_mid_write_leaves_clean_state_and_rerun_recovers(dagster_resources, monkeypatch):
    from geo_assets.defs.assets import ingest

    layout = dagster_resources["storage"].layout()
    tile = TILES[1]
    real_write = ingest.write_table

    def crash(path, table):
        raise OSError("injected: disk died mid-write")

    with dg.instance_for_test() as instance:
        monkeypatch.setattr(ingest, "write_table", crash)
        failed = materialize_tile(instance, dagster_resources, tile, images_per_tile=5, selection=["raw_images"], raise_on_error=False)
        assert not failed.success
        table_path = layout.table_path("raw_images", tile)
        assert not table_path.exists()
        leftovers = [p for p in layout.root.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == []

        monkeypatch.setattr(ingest, "write_table", real_write)
        ok = materialize_tile(instance, dagster_resources, tile, images_per_tile=5, selection=["raw_images"])
        assert ok.success
        table = read_table(table_path, RAW_IMAGES_SCHEMA)
        ids = table["image_id"].to_pylist()
        assert len(ids) == len(set(ids)) == metadata(ok, "raw_images")["total_images"]
        for rel in table["path"].to_pylist():
            assert (layout.root / rel).is_file()
        # Files of the failed run were overwritten in place, not duplicated.
        assert len(os.listdir(layout.root / "images" / "raw" / tile)) == len(ids)
