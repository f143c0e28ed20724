"""Serving = training: the features `geo-assets predict` builds for a stored image equal the
rows the tile assets wrote for it, in a real small materialization (both variants)."""

import json

import dagster as dg
import numpy as np
import pytest

from geo_assets.config.settings import GeoSettings
from geo_assets.defs.partitions import tile_keys
from geo_assets.embed.rows import VECTOR_COLUMNS
from geo_assets.model.predict import FeatureModels, load_input, model_input, variant_rows
from geo_assets.store.catalog import query_connection
from geo_assets_tests.dagster_helpers import materialize_tile

IMAGES = 6


@pytest.mark.slow
def test_predict_features_equal_the_embedding_rows_the_assets_wrote(dagster_resources):
    layout = dagster_resources["storage"].layout()
    tile = tile_keys()[0]
    with dg.instance_for_test() as instance:
        assert materialize_tile(instance, dagster_resources, tile, images_per_tile=IMAGES, check_sample=0,
                                easyocr_test_images=0).success
    with query_connection(layout) as con:
        stored = {(r[0], r[1]): r for r in con.execute(
            "SELECT e.image_id, e.variant, e.text_emb, e.image_emb, e.fused, e.ocr_emb, c.caption, c.ocr_clean, i.path "
            "FROM embeddings e JOIN captions c USING (image_id, variant) JOIN raw_images i USING (image_id)").fetchall()}
        guesses = {(r[0], r[1]): r[2:] for r in con.execute(
            "SELECT image_id, variant, guess_lat, guess_lon FROM attack_guesses WHERE engine = 'rapidocr'").fetchall()}
    ids = sorted({i for i, _ in stored})
    assert len(ids) >= 3
    # Images with OCR text first: they exercise the OCR vector, the blur and the gazetteer.
    ids.sort(key=lambda i: not stored[(i, "unblurred")][7])
    assert stored[(ids[0], "unblurred")][7], "no image with OCR text in the tile"

    models = FeatureModels.build()
    region = GeoSettings.from_env().region
    worst = 0.0
    for image_id in ids[:3]:
        image, error = load_input(layout.root / stored[(image_id, "unblurred")][8])
        assert error is None
        rows = variant_rows(image, models, region)
        for variant, row in rows.items():
            want = stored[(image_id, variant)]
            where = f"{image_id} {variant}"
            assert row["caption"] == want[6] and row["ocr_clean"] == want[7], where
            for col, value in zip(VECTOR_COLUMNS, want[2:6]):
                value = np.asarray(value, dtype=np.float32)
                assert row[col].shape == value.shape, (where, col)
                np.testing.assert_allclose(row[col], value, rtol=1e-4, atol=1e-4, err_msg=f"{where} {col}")
                worst = max(worst, float(np.max(np.abs(row[col] - value))))
            guess = guesses.get((image_id, variant), (None, None))
            want_gaz = [np.nan if g is None else g for g in guess]
            np.testing.assert_allclose(row["gaz"][0], want_gaz, equal_nan=True, err_msg=where)
            for feature in ("fused", "concat", "concat_ocr"):  # the model input, assembled as training does
                assert model_input(row, feature).shape[0] == 1
    print(json.dumps({"max_abs_diff": worst}))
