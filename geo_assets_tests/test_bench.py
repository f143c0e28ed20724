"""The benchmark on a tiny data set: every stage measured, the incremental runs done
through Dagster, the ratios written to JSON."""

import json

import pytest

from geo_assets import bench

STAGES = [
    "pull (search + download)",
    "OCR RapidOCR",
    "OCR EasyOCR (subset)",
    "blur (detect + blur + re-read)",
    "caption (imagenet-labels)",
    "text encoder (MiniLM)",
    "image encoder (EfficientNet-Lite0)",
    "fusion (cross-attention)",
    "train epoch (geocell 0.05)",
    "train epoch (geocell 0.1)",
    "predict end to end (1 image)",
    "model inference (geocell 0.05)",
    "model inference (geocell 0.1)",
]


def test_meter_sees_memory_and_time():
    import time

    with bench.Meter() as idle:
        time.sleep(0.2)
    assert 0.2 <= idle.seconds < 5
    assert idle.peak_mib < 16  # the peak is above the block's start, not the process's RSS
    with bench.Meter() as m:
        block = bytearray(64 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        time.sleep(0.05)  # a few samples while it is resident
        del block  # freed before the block ends: the peak still sees it
    assert 60 <= m.peak_mib < 64 + 32, m.peak_mib


def test_parse_sizes_and_new_images():
    assert bench.parse_sizes("80,40") == [40, 80]
    assert bench.new_images_for(8) == 1 and bench.new_images_for(80) == 4
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "4,x"])
    with pytest.raises(SystemExit):
        bench.main(["--skip-stages", "--skip-incremental"])


def test_cli_passes_leading_options_to_the_bench(capsys):
    from geo_assets import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    assert "--images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # the bench's own parser rejects it, not the CLI's
        cli.main(["bench", "--sizes", "4,x"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_bench_tiny_run_writes_every_stage_and_ratio(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # A leading "--" is what `geo-assets bench -- ARGS` passes through.
    rc = bench.main(["--", "--images", "6", "--easyocr-images", "1", "--train-rows", "64", "--epochs", "1",
                     "--tiles", "1", "--sizes", "4,6", "--check-sample", "1", "--workdir", str(tmp_path / "work"),
                     "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| stage" in printed and "(d) recompute all (seed)" in printed

    report = json.loads(out.read_text())
    for key in ("cpu_count", "torch_threads", "device"):
        assert key in report["machine"]
    assert report["started_at"] and report["finished_at"]

    stages = {s["stage"]: s for s in report["stage_throughput"]["stages"]}
    assert list(stages) == STAGES
    for name, s in stages.items():
        assert s["images"] >= 1, name
        assert s["seconds"] > 0 and s["images_per_s"] > 0, name
        # MiB above the stage's start: less than the machine has (a KiB/MiB mix-up is not)
        assert 0 <= s["peak_mib"] < report["machine"]["memory_total_mib"], name
    assert stages["pull (search + download)"]["images"] == 6
    assert stages["OCR EasyOCR (subset)"]["images"] == 1
    assert stages["caption (imagenet-labels)"]["images"] == 12  # both variants
    assert stages["predict end to end (1 image)"]["ok"]

    inc = report["incremental"]
    assert [r["images_per_tile"] for r in inc["sizes"]] == [4, 6]
    for r in inc["sizes"]:
        assert set(r["ratios"]) == {"b_over_a", "b_pull_only_over_a", "c_over_a", "d_over_a", "c_over_d"}
        assert r["a_full"]["total_images"] == r["images_per_tile"]
        assert r["b_no_new"]["new_images"] == 0
        assert r["c_new"]["new_images"] == 1
        assert r["d_recompute"]["new_images"] == 0
        assert r["b_no_new"]["seconds"] < r["a_full"]["seconds"]
        # (b) recomputes nothing; (d) recomputes everything from the kept raw images
        counts_b = r["b_no_new"]["runs"][0]["counts"]
        assert counts_b["ocr_text"]["ocr_computed"] == 0 and counts_b["embeddings"]["encoded"] == 0
        counts_d = r["d_recompute"]["runs"][0]["counts"]
        assert counts_d["ocr_text"]["ocr_computed"] == r["images_per_tile_after"]
    assert len(inc["growth"]) == 1 and inc["growth"][0]["total_images"] == pytest.approx(1.5)


@pytest.mark.slow
def test_per_image_bench_compares_both_paths_and_prints_tables(tmp_path, capsys):
    """`geo-assets bench --per-image N`: the tile stages along the previous and the current code
    on the same images, interleaved, the encoders' throughput, blur quality; tables and JSON."""
    out = tmp_path / "per_image.json"
    assert bench.main(["--skip-stages", "--skip-incremental", "--per-image", "8", "--per-image-rounds", "1",
                       "--easyocr-images", "1", "--out", str(out)]) == 0
    per = json.loads(out.read_text())["per_image"]
    assert [r["stage"] for r in per["stages"]] == ["ocr_text", "blurred_images", "captions", "embeddings", "total"]
    for row in per["stages"]:
        assert row["previous_s_per_image"] > 0 and row["current_s_per_image"] > 0 and row["ratio"] > 0
    assert per["same_ocr_words"] is True and per["same_unblurred_captions"] is True
    assert per["max_abs_unblurred_fused_difference"] < 1e-3  # runtimes differ by float rounding only
    image, text = per["encoders"]
    assert "openvino" in image["encoder"] and image["per_second"] > 0 and image["previous_per_second"] > 0
    assert text["per_second"] > 0 and text["items"] == 64
    for path in ("previous", "current"):
        assert 0 <= per["quality"][path]["covered_80pct_share"] <= 1
    printed = capsys.readouterr().out
    assert "Per-image cost of the tile stages" in printed and "Encoder throughput" in printed
