"""The gazetteer attacker (issue 12): its rules on hand-made reads, a real RapidOCR read of
a synthetic image before and after blurring, and a real materialization of its asset."""

import dagster as dg
import pytest

from geo_assets.attack.gazetteer import Guess, locate
from geo_assets.defs.partitions import tile_keys
from geo_assets.geo.haversine import haversine_km
from geo_assets.preprocess.ocr import OcrWord

# --------------------------------------------------------------------------- rules on hand-made reads

BRAMHOPE = (53.88489, -1.61641)
ABERDEEN = (57.14369, -2.09814)


def _km(guess: Guess, lat: float, lon: float) -> float:
    return float(haversine_km(lat, lon, guess.lat, guess.lon))


def test_dashcam_coordinates_win_over_place_names():
    g = locate(["GARMIN", "02/06/2022 05:13:39 PM", "51.38971 -0.28321", "53 MPH", "WELCOME TO", "BRAMHOPE"])
    assert g == Guess(51.38971, -0.28321, "coordinates", "51.38971 -0.28321", None)
    # OCR noise: the pair run together, or split over two items, a comma for the point.
    assert (locate(["51.38971-0.28321"]).lat, locate(["51.38971-0.28321"]).lon) == (51.38971, -0.28321)
    g = locate(["55.86515", "-4.25763"])
    assert (g.lat, g.lon, g.source) == (55.86515, -4.25763, "coordinates")
    g = locate(["51,38971 -0,28321"])
    assert (g.lat, g.lon) == (51.38971, -0.28321)


def test_missing_minus_repaired_only_where_safe():
    # 2.08616 E at 53.4 N is outside the UK boxes: the dropped minus is certain.
    g = locate(["53.44850 2.08616"])
    assert (g.lat, g.lon) == (53.4485, -2.08616)
    # 0.28321 E is a real place (Kent): the printed reading stays.
    g = locate(["51.38971 0.28321"])
    assert (g.lat, g.lon) == (51.38971, 0.28321)


def test_coordinates_outside_the_uk_are_rejected():
    assert locate(["48.85837 2.29448"]) is None  # Paris
    assert locate(["40.71280 -74.00600"]) is None  # New York
    assert locate(["-51.38971 -0.28321"]) is None  # southern hemisphere
    # Foreign coordinates do not stop the place-name rule.
    g = locate(["48.85837 2.29448", "WELCOME TO", "BRAMHOPE"])
    assert g.source == "place" and g.matched == "Bramhope"
    # A narrower region rejects a UK pair outside it.
    from geo_assets.geo.bbox import BBox

    assert locate(["57.14369 -2.09814"], region=(BBox(-2.0, 51.0, 0.0, 53.0),)) is None


def test_a_place_name():
    g = locate(["WELCOME TO", "BRAMHOPE", "M62"])
    assert g.source == "place" and g.matched == "Bramhope" and g.population > 0
    assert _km(g, *BRAMHOPE) < 0.01
    # OcrWord input, and OCR confusions undone.
    assert locate([OcrWord("Bramhope", 0.9, [[0, 0], [9, 0], [9, 5], [0, 5]])]).matched == "Bramhope"
    assert locate(["Oidham"]).matched == "Oldham"
    assert locate(["0xford"]).matched == "Oxford"
    assert locate(["KesgravePostOffice"]).matched == "Kesgrave"


def test_a_destination_with_miles_loses_to_the_place_the_camera_is_in():
    words = ["A9", "Aberdeen 26", "NIGG POST OFFICE"]
    assert locate(words).matched == "Nigg"
    assert locate(words, rule="most_populous").matched == "Aberdeen"  # the naive baseline
    assert locate(["A17 Peterborough", "HOLBEACH"]).matched == "Holbeach"  # a road number leads a destination
    # A destination alone is still a guess: the town the road leads to.
    g = locate(["Aberdeen 26"])
    assert g.matched == "Aberdeen" and _km(g, *ABERDEEN) < 0.01


def test_nothing_to_read_abstains():
    assert locate([]) is None
    assert locate(None) is None
    assert locate(["Please drive carefully", "A4286", "30 MPH", "12/05/2023 10:11:12 AM"]) is None
    assert locate(["Bath Street"]) is None  # everyday words, not the city
    # An everyday word alone is no place without a cue (issue 21: "SALE" banners, "THE BATH HOUSE");
    # the attacker before issue 21 took a lone one.
    assert locate(["BATH"]) is None
    assert locate(["BATH"], strict=False).matched == "Bath"
    assert locate(["Welcome to", "BATH"]).matched == "Bath"


def test_shared_names_resolve_near_the_other_places_named():
    assert locate(["Hayes"]) is None  # a common surname alone is no evidence (issue 21)
    assert _km(locate(["Welcome to", "Hayes"]), 51.51579, -0.4234) < 0.01  # Hillingdon's, the most populous
    assert _km(locate(["Hayes", "Bromley 5"]), 51.37786, 0.01682) < 0.01  # Bromley's


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown rule"):
        locate(["Bramhope"], rule="nearest")


# --------------------------------------------------------------------------- real OCR on the synthetic world


def _legible_place_sign_image(world):
    """The image (no dashcam) whose place sign is biggest and clearest among the first 400,
    and whose ground-truth text locates it within 10 km."""
    best, best_score = None, 0.0
    for image_id in world.ids[:400]:
        meta = world.meta(image_id)
        if not meta.has_sign or meta.has_dashcam:
            continue
        texts = world.ground_truth(image_id)
        signs = [t for t in texts if t.kind == "place_sign" and meta.place.upper() in t.text.upper()]
        if not signs:
            continue
        score = max((t.bbox[3] - t.bbox[1]) * t.contrast for t in signs)  # text height x contrast
        if score > best_score:
            g = locate([t.text for t in texts])
            if g is not None and _km(g, meta.lat, meta.lon) <= 10:
                best, best_score = image_id, score
    assert best is not None
    return best


def test_rapidocr_read_locates_a_place_sign_and_the_blurred_copy_does_not():
    import cv2
    import numpy as np

    from geo_assets.defs.resources import synthetic_world
    from geo_assets.preprocess.ocr import make_ocr_engine
    from geo_assets.preprocess.variants import make_blurred_variant

    world = synthetic_world(0)
    image_id = _legible_place_sign_image(world)
    meta = world.meta(image_id)
    image = cv2.imdecode(np.frombuffer(world.render(image_id).jpeg, np.uint8), cv2.IMREAD_COLOR)
    engine = make_ocr_engine("rapidocr")
    words = engine.read(image)
    guess = locate(words)
    assert guess is not None and guess.source == "place", [w.text for w in words]
    assert _km(guess, meta.lat, meta.lon) <= 10, (meta.place, guess)

    # The blurred variant as the blurred_images asset makes it, and its own re-read.
    blurred = make_blurred_variant(image, engine, words)
    after = locate(blurred.words_after)
    assert after is None or _km(after, meta.lat, meta.lon) > 10, ([w.text for w in blurred.words_after], after)


# --------------------------------------------------------------------------- the asset


def _run_config(images_per_tile: int, easyocr_cap: int) -> dict:
    return {"ops": {"raw_images": {"config": {"images_per_tile": images_per_tile}},
                    "blurred_images": {"config": {"check_sample": 1}},
                    "gazetteer_attack": {"config": {"easyocr_max_test_images": easyocr_cap}}}}


def _test_split_count(layout, tile: str) -> int:
    from geo_assets.store.schemas import RAW_IMAGES_SCHEMA
    from geo_assets.model.splits import assign_splits
    from geo_assets.store.parquet import read_table

    rows = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA).to_pylist()
    splits = assign_splits([r["image_id"] for r in rows], [r["sequence_id"] for r in rows],
                           [r["lat"] for r in rows], [r["lon"] for r in rows])
    return int(sum(s == "test" for s in splits))


@pytest.mark.slow
def test_gazetteer_attack_asset_then_rerun_runs_no_ocr(dagster_resources):
    from geo_assets.defs.assets.attack import attack_table_path
    from geo_assets.store.schemas import ATTACK_SCHEMA
    from geo_assets.definitions import TILE_ASSET_NAMES
    from geo_assets.run.execution import all_assets
    from geo_assets.store.schemas import RAW_IMAGES_SCHEMA
    from geo_assets.store.parquet import read_table
    from geo_assets_tests.dagster_helpers import metadata

    layout = dagster_resources["storage"].layout()
    assert "gazetteer_attack" in set(TILE_ASSET_NAMES)
    cap = 2
    with dg.instance_for_test() as instance:
        # Pull (cheap) until a tile holds a test-split image: splits go by sequence, and the
        # first images of a tile often come from one or two sequences.
        tile, n_images, counts = None, 0, {}
        for n_images in (6, 10, 16):
            for t in tile_keys():
                pulled = dg.materialize(all_assets(), selection=["raw_images"], partition_key=t, instance=instance,
                                        resources=dagster_resources,
                                        run_config={"ops": {"raw_images": {"config": {"images_per_tile": n_images}}}})
                assert pulled.success
                counts[t] = _test_split_count(layout, t)
                if counts[t]:
                    tile = t
                    break
            if tile:
                break
        assert tile is not None, f"no test-split image among {n_images} images of any tile: {counts}"

        result = dg.materialize(all_assets(), selection=list(TILE_ASSET_NAMES), partition_key=tile, instance=instance,
                                resources=dagster_resources, run_config=_run_config(n_images, cap))
        assert result.success
        meta = metadata(result, "gazetteer_attack")
        images = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA).to_pylist()
        table = read_table(attack_table_path(layout, tile), ATTACK_SCHEMA)
        rows = table.to_pylist()
        assert table.schema.names == ATTACK_SCHEMA.names and meta["rows"] == len(rows)

        rapid = [r for r in rows if r["engine"] == "rapidocr"]
        easy = [r for r in rows if r["engine"] == "easyocr"]
        assert {(r["image_id"], r["variant"]) for r in rapid} == {(i["image_id"], v) for i in images for v in ("unblurred", "blurred")}
        n_easy = min(cap, counts[tile])
        assert len(easy) == 2 * n_easy and {r["variant"] for r in easy} == {"unblurred", "blurred"}
        assert all(r["split"] == "test" for r in easy)
        assert meta["easyocr_images_chosen"] == n_easy
        assert meta["easyocr_reads"] + meta["easyocr_reads_from_blur_check"] == 2 * n_easy
        assert meta["easyocr_images_read"] == n_easy
        truth = {i["image_id"]: i for i in images}
        for r in rows:
            assert r["split"] in ("train", "validation", "test") and r["sequence_id"] == truth[r["image_id"]]["sequence_id"]
            assert (r["lat"], r["lon"]) == (truth[r["image_id"]]["lat"], truth[r["image_id"]]["lon"])
            assert (r["guess_lat"] is None) == (r["error_km"] is None) == (r["source"] is None)
            assert r["text_reliant"] in (True, False) and len(r["words_sha"]) == 24
        summary = meta["by_engine_variant"]
        assert summary["rapidocr/unblurred"]["rows"] == len(images)
        assert summary["easyocr/blurred"]["rows"] == n_easy

        # Nothing new: no OCR anywhere, every EasyOCR row reused, the same table.
        again = dg.materialize(all_assets(), selection=list(TILE_ASSET_NAMES), partition_key=tile, instance=instance,
                               resources=dagster_resources, run_config=_run_config(n_images, cap))
        assert again.success
        assert metadata(again, "ocr_text")["rows_computed"] == 0
        assert metadata(again, "blurred_images")["rows_computed"] == 0
        meta2 = metadata(again, "gazetteer_attack")
        assert meta2["easyocr_reads"] == 0 and meta2["easyocr_images_read"] == 0
        assert meta2["easyocr_rows_reused"] == 2 * n_easy
        assert (meta2["rows_computed"], meta2["rows_reused"]) == (0, len(rows)), "no row located again"
        assert read_table(attack_table_path(layout, tile), ATTACK_SCHEMA).to_pylist() == rows

        # Another rule: every row located again, from the stored reads (no OCR).
        from geo_assets.attack.gazetteer import DEFAULT_RULE, RULES

        other = next(r for r in RULES if r != DEFAULT_RULE)
        rerule = dg.materialize(all_assets(), selection=["gazetteer_attack"], partition_key=tile, instance=instance,
                                resources=dagster_resources,
                                run_config={"ops": {"gazetteer_attack": {"config": {"easyocr_max_test_images": cap, "rule": other}}}})
        meta3 = metadata(rerule, "gazetteer_attack")
        assert (meta3["rows_computed"], meta3["rows_reused"], meta3["easyocr_reads"]) == (len(rows), 0, 0)
        assert set(read_table(attack_table_path(layout, tile), ATTACK_SCHEMA)["rule"].to_pylist()) == {other}
