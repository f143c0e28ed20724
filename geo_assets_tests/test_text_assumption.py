"""The synthetic world's text assumption (issue 21, item 5): the place-text share as a
setting, today's world unchanged at its default, the report's header and sensitivity table,
and one small real run of the sensitivity path."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from geo_assets.model.report import SEED_FIGURE_18, build_privacy_report
from geo_assets.model.sensitivity import RESULT_FILE, read_result
from geo_assets.model.text_assumption import assumption_header, seed_comparison, sensitivity_lines, source_share
from geo_assets.config.settings import GeoSettings
from geo_assets.synthetic.world import DEFAULT_PLACE_TEXT_SHARE, SIGN_RATE, SyntheticWorld

# ImageMeta's fields before the share existed: today's records must not move.
_FIELDS_BEFORE = ("id", "lat", "lon", "captured_at", "sequence", "creator", "compass_angle", "width", "height", "place",
                  "place_population", "place_distance_km", "nearest_town", "admin", "region", "coastal", "sea_bearing",
                  "elevation", "town_density", "has_sign", "has_dashcam", "camera_make", "camera_model", "index")
# Fingerprints of the world at seed 0 taken from the code before the share existed (commit
# d483623): every record, and the JPEG bytes and drawn texts of 12 sign images.
_META_SHA256 = "725c091d165d87bd1a17636d1b552a48143c8dea6b9ffee7e9dcb4f2a139c8dd"
_RENDER_SHA256 = "de5a3afcbb0f8e77ffdcdb68ffca5f1e71db758b92ccafa168f6fbbd8b946993"


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


def _sign_ids(world: SyntheticWorld) -> list[str]:
    return [world.ids[k] for k in range(0, len(world), 37) if world.meta_at(k).has_sign][:12]


def test_default_share_leaves_todays_world_byte_identical(world):
    assert DEFAULT_PLACE_TEXT_SHARE == SIGN_RATE
    h = hashlib.sha256()
    for k in range(len(world)):
        d = world.meta_at(k).to_dict()
        h.update(json.dumps([d[f] for f in _FIELDS_BEFORE]).encode())
    assert h.hexdigest() == _META_SHA256
    h = hashlib.sha256()
    for i in _sign_ids(world):
        h.update(world.render(i).jpeg)
        h.update(json.dumps([t.to_dict() for t in world.ground_truth(i)]).encode())
    assert h.hexdigest() == _RENDER_SHA256
    # At the default every sign names its place, and only sign images do.
    metas = [world.meta_at(k) for k in range(len(world))]
    assert all(m.place_text == m.has_sign for m in metas)
    assert world.place_text_rate == pytest.approx(np.mean([m.has_sign for m in metas]))


def test_lower_share_keeps_images_and_signs_but_not_the_place_names(world):
    low = SyntheticWorld(seed=0, place_text_share=DEFAULT_PLACE_TEXT_SHARE / 5)
    assert low.ids == world.ids
    same = [k for k in range(0, len(world), 11)]
    for k in same:
        a, b = world.meta_at(k), low.meta_at(k)
        assert (a.lat, a.lon, a.sequence, a.has_sign, a.has_dashcam) == (b.lat, b.lon, b.sequence, b.has_sign, b.has_dashcam)
    assert low.place_text_rate == pytest.approx(DEFAULT_PLACE_TEXT_SHARE / 5, abs=0.015)
    # Sign images whose text names no place: none of their signs carries the place or the town.
    quiet = [low.meta_at(k) for k in range(0, len(low), 3) if low.meta_at(k).has_sign and not low.meta_at(k).place_text][:40]
    assert len(quiet) == 40
    for m in quiet:
        texts = [t.text.lower() for t in low.ground_truth(m.id) if t.kind != "dashcam"]
        assert texts, m.id  # the signs are still there (the same amount of text to blur)
        assert not any(m.place.lower() in t or m.nearest_town.lower() in t for t in texts), (m.place, texts)
    # Images that still name their place draw what they drew before, and so do images without signs.
    kept = [k for k in range(0, len(low), 5) if low.meta_at(k).place_text][:5]
    plain = [k for k in range(0, len(low), 5) if not low.meta_at(k).has_sign][:3]
    for k in kept + plain:
        assert low.render(low.ids[k]).jpeg == world.render(world.ids[k]).jpeg
    none = SyntheticWorld(seed=0, place_text_share=0.0)
    assert none.place_text_rate == 0.0
    full = SyntheticWorld(seed=0, place_text_share=1.0)
    assert full.place_text_rate == 1.0 and full.ids == world.ids


@pytest.mark.parametrize("bad", [-0.01, 1.2, float("nan"), "many", None])
def test_share_is_validated(bad):
    with pytest.raises(ValueError, match="place_text_share"):
        SyntheticWorld(seed=0, place_text_share=bad)


def test_setting_reads_and_validates_its_variable(monkeypatch):
    monkeypatch.delenv("GEO_ASSETS_PLACE_TEXT_SHARE", raising=False)
    assert GeoSettings.from_env().place_text_share == DEFAULT_PLACE_TEXT_SHARE
    monkeypatch.setenv("GEO_ASSETS_PLACE_TEXT_SHARE", "0.07")
    assert GeoSettings.from_env().place_text_share == 0.07
    for bad in ("1.5", "-1", "lots"):
        monkeypatch.setenv("GEO_ASSETS_PLACE_TEXT_SHARE", bad)
        with pytest.raises(ValueError, match="GEO_ASSETS_PLACE_TEXT_SHARE"):
            GeoSettings.from_env()


def test_source_name_carries_a_non_default_share_and_the_header_reads_it():
    from geo_assets.defs.resources import ImageSourceResource, build_resources, synthetic_source_name

    assert synthetic_source_name(0, DEFAULT_PLACE_TEXT_SHARE) == "synthetic:0:world-v2"  # today's rows unchanged
    name = synthetic_source_name(0, 0.07)
    assert source_share(name) == 0.07 and source_share("synthetic:0:world-v2") == DEFAULT_PLACE_TEXT_SHARE
    assert source_share("mapillary") is None
    assert ImageSourceResource(kind="synthetic", place_text_share=0.07).source_name == name
    settings = GeoSettings.from_env()
    from dataclasses import replace

    assert build_resources(replace(settings, place_text_share=0.0))["image_source"].world().place_text_rate == 0.0

    header = "\n".join(assumption_header(["synthetic:0:world-v2"]))
    assert f"place-text share = {DEFAULT_PLACE_TEXT_SHARE:g}" in header and "assumption of the synthetic world" in header
    assert "GEO_ASSETS_PLACE_TEXT_SHARE" in header
    header = "\n".join(assumption_header([name]))
    assert "place-text share = 0.07" in header and "about 7%" in header
    real = "\n".join(assumption_header(["mapillary"]))
    assert "does not apply" in real and "place-text share =" not in real
    mixed = "\n".join(assumption_header([name, "synthetic:0:world-v2"]))
    assert "0.07 and 0.35" in mixed and "mix" in mixed


def _effect(a: float, b: float, low: float, high: float) -> dict:
    return {"within_10km_pct": {"a": a, "b": b, "diff": b - a, "low": low, "high": high,
                                "significant": bool(low > 0 or high < 0), "level": 0.95}}


def _result() -> dict:
    return {"format": 1, "default_share": DEFAULT_PLACE_TEXT_SHARE, "geocell": "0.05", "tiles": ["a", "b"],
            "images_per_tile": 60, "seconds": 612.0, "command": "geo-assets sensitivity",
            "rows": [{"place_text_share": 0.0, "place_text_rate": 0.0, "n": 100, "n_text_reliant": 3,
                      "all": _effect(12.0, 11.0, -3.0, 1.0)},
                     {"place_text_share": DEFAULT_PLACE_TEXT_SHARE, "place_text_rate": 0.34, "n": 100, "n_text_reliant": 30,
                      "all": _effect(30.0, 8.0, -30.0, -14.0)}]}


def test_sensitivity_table_rendered_from_its_json(tmp_path):
    path = tmp_path / RESULT_FILE
    assert read_result(path) is None
    md = "\n".join(sensitivity_lines(None))
    assert "Not computed yet" in md and "geo-assets sensitivity" in md
    path.write_text(json.dumps(_result()))
    result = read_result(path)
    md = "\n".join(sensitivity_lines(result))
    rows = [line for line in md.splitlines() if line.startswith("| 0")]
    # Highest share first, its difference and interval as stored, the default marked.
    assert rows[0].startswith(f"| {DEFAULT_PLACE_TEXT_SHARE:g} (default) | 34.0% | 100 (30) | 30.0 | 8.0 | -22.0 [-30.0, -14.0] | yes |")
    assert rows[1].startswith("| 0 | 0.0% | 100 (3) | 12.0 | 11.0 | -1.0 [-3.0, +1.0] | no |")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt sensitivity file"):
        read_result(path)
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a text-assumption sensitivity result"):
        read_result(path)


def test_seed_comparison_is_computed_from_the_numbers():
    main = {"0.05": {"all": _effect(15.7, 4.7, -19.6, -3.0)}}
    text = " ".join(seed_comparison(SEED_FIGURE_18, main, _result()))
    seed_a, seed_b = SEED_FIGURE_18[("unblurred", "0.05")][3], SEED_FIGURE_18[("blurred", "0.05")][3]
    assert f"from {seed_a:.1f}% to {seed_b:.1f}% ({seed_b - seed_a:+.1f} points" in text
    assert "by -11.0 points" in text and f"{round(11.0 / abs(seed_b - seed_a))} times" in text
    assert "outside its 95% interval" in text
    assert "inside the 95% interval at place-text share 0 and outside it at share 0.35" in text
    three = _result()
    three["rows"].append({**three["rows"][0], "place_text_share": 0.07})
    assert "at place-text shares 0.07 and 0 and outside it at share 0.35" in " ".join(seed_comparison(SEED_FIGURE_18, main, three))
    # The seed's difference inside the run's interval reads so.
    inside = " ".join(seed_comparison(SEED_FIGURE_18, {"0.05": {"all": _effect(15.0, 14.0, -4.0, 2.0)}}, None))
    assert "lies inside its interval" in inside


def test_report_carries_header_table_and_comparison():
    rng = np.random.default_rng(3)
    n = 60
    ids = [f"i{k}" for k in range(n)]
    rows = lambda km: {"image_id": ids, "sequence_id": [f"s{k // 3}" for k in range(n)], "text_reliant": [k % 3 == 0 for k in range(n)],
                       "km": list(km), "cell_hit": [False] * n, "top5_hit": [False] * n, "top10_hit": [False] * n}
    from geo_assets.model.uncertainty import bootstrap_metrics

    ev = lambda blur: {"blur": blur, "geocell": "0.05", "n": n, "n_sequences": 20, "evaluation_split": "test",
                       "protocol": "sequence", "metrics": bootstrap_metrics({"km": np.ones(n)}, n_boot=50),
                       "baseline": bootstrap_metrics({"km": np.ones(n)}, n_boot=50),
                       "text_reliant": {"n": 20, "metrics": bootstrap_metrics({"km": np.ones(20)}, n_boot=50)}}
    preds = {("unblurred", "0.05"): rows(rng.uniform(0, 30, n)), ("blurred", "0.05"): rows(rng.uniform(5, 300, n))}
    report = build_privacy_report([ev("unblurred"), ev("blurred")], preds, sources=["synthetic:0:world-v2"],
                                  sensitivity=_result(), n_boot=100)
    md = report["markdown"]
    assert md.index("Text assumption of the synthetic world") < md.index("## Figure 18 on the test split")
    assert "## The text assumption varied" in md and "| 0 | 0.0% |" in md and "Against real photos" in md
    assert report["json"]["text_assumption"]["sensitivity"]["rows"][0]["n"] == 100
    bare = build_privacy_report([ev("unblurred"), ev("blurred")], preds, sources=["mapillary"], n_boot=100)["markdown"]
    assert "does not apply" in bare and "Not computed yet" in bare


@pytest.mark.slow
def test_sensitivity_runs_the_graph_for_two_shares(tmp_path):
    """One small real run: two shares, one tile of 48 images (7 drives), two models each, through the assets."""
    from geo_assets.model.sensitivity import SensitivityConfig, share_folder
    from geo_assets.run.sensitivity import run_sensitivity

    settings = GeoSettings.from_env().with_storage(tmp_path / "storage", tmp_path / "models")
    result = run_sensitivity(settings, SensitivityConfig(shares=(DEFAULT_PLACE_TEXT_SHARE, 0.0), tiles=1,
                                                         images_per_tile=48, max_epochs=3, n_boot=200), log=lambda m: None)
    assert [r["place_text_share"] for r in result["rows"]] == [DEFAULT_PLACE_TEXT_SHARE, 0.0]
    default, zero = result["rows"]
    assert default["n_images"] == zero["n_images"] >= 48
    assert zero["place_text_rate"] == 0.0 < default["place_text_rate"]
    assert default["sign_rate"] == zero["sign_rate"]  # the same images and signs: only the words differ
    for row in result["rows"]:
        d = row["all"]["within_10km_pct"]
        assert row["n"] > 0 and d["low"] <= d["diff"] <= d["high"]
        assert (share_folder(settings.storage_dir, row["place_text_share"]) / "storage" / "tables" / "raw_images").is_dir()
    # The worlds' own data, not the main storage's, and the same image ids in both.
    assert not (tmp_path / "storage" / "tables").exists()
    md = "\n".join(sensitivity_lines(result))
    assert f"| {DEFAULT_PLACE_TEXT_SHARE:g} (default) |" in md and "| 0 |" in md
