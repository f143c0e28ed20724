"""The folder source runs the whole graph on a real geotagged drive (`../shared/data/real/lund_exif`:
29 photos of one Mapillary sequence in Lund, EXIF GPS, mapillary_tools JSON in ImageDescription),
and a missing folder fails with a message that names it."""

import json

import dagster as dg
import pytest

from geo_assets.run import execution
from geo_assets.data.real_sets import real_data_dir
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key, tile_keys
from geo_assets.defs.resources import build_resources
from geo_assets.config.settings import GeoSettings
from geo_assets.store.catalog import query_connection
from geo_assets_tests.dagster_helpers import materialize_model, materialize_tile, metadata


LUND = real_data_dir() / "lund_exif"
LUND_REGION = "13.0,55.6,13.4,55.8"  # the drive is at 55.698-55.700 N, 13.1945-13.1954 E


def folder_settings(monkeypatch, tmp_path, folder) -> GeoSettings:
    monkeypatch.setenv("GEO_ASSETS_SOURCE", "folder")
    monkeypatch.setenv("GEO_ASSETS_FOLDER", str(folder))
    monkeypatch.setenv("GEO_ASSETS_REGION", LUND_REGION)
    monkeypatch.setenv("GEO_ASSETS_TILE_SIZE", "2.0")
    monkeypatch.setenv("GEO_ASSETS_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("GEO_ASSETS_MODELS", str(tmp_path / "models"))
    return GeoSettings.from_env()


def test_folder_source_needs_a_folder_and_names_a_missing_one(monkeypatch, tmp_path):
    monkeypatch.setenv("GEO_ASSETS_SOURCE", "folder")
    monkeypatch.delenv("GEO_ASSETS_FOLDER", raising=False)
    with pytest.raises(ValueError, match="GEO_ASSETS_FOLDER"):
        GeoSettings.from_env()
    missing = tmp_path / "no such photos"
    settings = folder_settings(monkeypatch, tmp_path, missing)
    assert settings.folder == str(missing)
    source = build_resources(settings)["image_source"]
    assert source.kind == "folder" and source.source_name == "folder"
    # What a run does first (the resource's setup): a failure that names the folder.
    with pytest.raises(dg.Failure, match="no such photos.*does not exist"):
        source.setup_for_execution(dg.build_init_resource_context())
    missing.mkdir()
    source.setup_for_execution(dg.build_init_resource_context())


@pytest.mark.slow
@pytest.mark.skipif(not LUND.is_dir(), reason=f"real data not present at {LUND} (set GEO_ASSETS_REAL_DATA)")
def test_whole_graph_on_lund_exif(monkeypatch, tmp_path):
    settings = folder_settings(monkeypatch, tmp_path, LUND)
    resources = build_resources(settings)
    layout = resources["storage"].layout()
    tiles = tile_keys(settings)
    assert tiles == ["55.60_13.00_55.80_13.40"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, list(settings.geocell_sizes))
        result = materialize_tile(instance, resources, tiles[0], images_per_tile=1000, settings=settings)
        assert result.success
        pulled = metadata(result, "raw_images")
        # 29 photos; 04 is 1.97 m from 03, and 27-29 share one position: duplicate_position.
        assert pulled["new_images"] == 26 and pulled["new_rejects"] == 3, pulled
        assert pulled["folder_files"] == 29 and pulled["folder_content_reads"] == 29
        with query_connection(layout) as con:
            rows = con.execute("SELECT count(*), count(DISTINCT sequence_id), min(lat), max(lat), min(captured_at) "
                               "FROM raw_images").fetchone()
            reasons = dict(con.execute("SELECT reason, count(*) FROM raw_rejects GROUP BY 1").fetchall())
            embedded = con.execute("SELECT variant, count(*) FROM embeddings GROUP BY 1").fetchall()
        assert rows[0] == 26 and rows[1] == 1  # one MAPSequenceUUID
        assert 55.698 < rows[2] < rows[3] < 55.700
        assert rows[4] == 1402136645656  # 2014_06_07_10_24_05_656 (MAPCaptureTime, UTC)
        assert reasons == {"duplicate_position": 3}
        assert dict(embedded) == {"unblurred": 26, "blurred": 26}

        # The next scheduled pull finds nothing new and opens no photo.
        again = execution.materialize(["raw_images"], instance=instance, resources=resources, partition_key=tiles[0],
                                      run_config={"ops": {"raw_images": {"config": {"images_per_tile": 1000}}}},
                                      settings=settings)
        meta = metadata(again, "raw_images")
        assert meta["new_images"] == 0 and meta["folder_header_reads"] == 0 and meta["folder_content_reads"] == 0

        # One sequence cannot be split into train and test: the models train on what exists
        # and say plainly that there is nothing held out to report.
        for geocell in settings.geocell_sizes:
            for blur in ("unblurred", "blurred"):
                model = materialize_model(instance, resources, model_partition_key(blur, geocell), max_epochs=3,
                                          settings=settings)
                assert model.success
                trained = metadata(model, "geolocator_model")
                assert trained["train_rows"] + trained["val_rows"] + trained["test_rows"] == 26
                # The drive's one sequence hashes to train: nothing held out, and the run says so.
                assert trained["test_rows"] == 0 and "no test images" in trained["split_warning"]
                assert "26 images in 1 sequence," in trained["split_warning"]
                evaluation = json.loads((layout.model_dir(blur, geocell) / "evaluation.json").read_text())
                assert evaluation["n"] == trained["test_rows"]
        report = execution.materialize_report(instance, resources, settings=settings)
        assert report.success
        md = (layout.root / "reports" / "privacy_report.md").read_text()
        assert "| Unblurred 0.1 |" in md
        assert md.startswith("# Privacy report\n\n**No test images.**")


@pytest.mark.slow
def test_a_tile_without_photos_materializes_every_stage_empty(monkeypatch, tmp_path):
    # The synthetic world's default run has such a tile (49.90_1.60_51.90_1.80): its embeddings
    # step once failed on the empty table, which held every model partition back.
    empty = tmp_path / "no photos yet"
    empty.mkdir()
    settings = folder_settings(monkeypatch, tmp_path, empty)
    resources = build_resources(settings)
    tile = tile_keys(settings)[0]
    with dg.instance_for_test() as instance:
        result = materialize_tile(instance, resources, tile, images_per_tile=10, settings=settings)
        assert result.success
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert done == {"raw_images", "ocr_text", "blurred_images", "captions", "embeddings", "gazetteer_attack"}
        assert metadata(result, "embeddings")["dagster/row_count"] == 0
        assert metadata(result, "raw_images")["total_images"] == 0
