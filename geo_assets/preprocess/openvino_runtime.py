"""Run RapidOCR's own ONNX models (PP-OCRv4 det/rec, mobile cls) with OpenVINO on CPU.

Why: on this project's 2-core CPU, OpenVINO's CPU plugin runs the PP-OCRv4 detector
at 0.11 s per 736x992 input against onnxruntime's 0.22 s, with the same numbers
(max |difference| 7e-5 in the probability map; the words and low-threshold regions
of 90 synthetic-world images were identical). Precision is pinned to f32: on CPUs
with AMX, OpenVINO's default would be bf16, which moves the map by up to 1.0 at a
few pixels and so changes what is read.

Same call shape as rapidocr's ``OrtInferSession`` (``session(x) -> [outputs]``), so
the swap is one attribute per model and every RapidOCR step around it stays its own.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

PRECISION = "f32"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str:
    return importlib.metadata.version("openvino")


class OpenVinoSession:
    """One compiled model and one infer request; callers serialise calls (the engine's lock)."""

    def __init__(self, model_path: Path, *, threads: int | None = None) -> None:
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": PRECISION, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.model_path = Path(model_path)
        self._compiled = ov.Core().compile_model(str(self.model_path), "CPU", config)
        self._request = self._compiled.create_infer_request()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(result[0], copy=True)]  # the request reuses its output buffer


def rapidocr_model_paths() -> dict[str, Path]:
    """The det / cls / rec model files named by rapidocr's bundled config.yaml."""
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml

    config = read_yaml(DEFAULT_CFG_PATH)
    root = Path(DEFAULT_CFG_PATH).parent
    return {part: root / config[section]["model_path"] for part, section in
            (("det", "Det"), ("cls", "Cls"), ("rec", "Rec"))}


def use_openvino(ocr, *, threads: int | None = None) -> None:
    """Swap a built ``rapidocr_onnxruntime.RapidOCR``'s three inference sessions for OpenVINO ones.

    The recogniser's character list was read from the ONNX metadata when it was built and
    is kept; pre- and post-processing are RapidOCR's own."""
    paths = rapidocr_model_paths()
    ocr.text_det.infer = OpenVinoSession(paths["det"], threads=threads)
    ocr.text_cls.infer = OpenVinoSession(paths["cls"], threads=threads)
    ocr.text_rec.session = OpenVinoSession(paths["rec"], threads=threads)
