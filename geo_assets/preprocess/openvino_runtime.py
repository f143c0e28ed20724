"""Run the OCR engines' detectors (and RapidOCR's recogniser and classifier) with OpenVINO on CPU.

Why: on this project's 2-core CPU, OpenVINO's CPU plugin runs the PP-OCRv4 detector
at 0.11 s per 736x992 input against onnxruntime's 0.22 s, with the same numbers
(max |difference| 7e-5 in the probability map; the words and low-threshold regions
of 90 synthetic-world images were identical). Precision is pinned to f32: on CPUs
with AMX, OpenVINO's default would be bf16, which moves the map by up to 1.0 at a
few pixels and so changes what is read.

Same call shape as rapidocr's ``OrtInferSession`` (``session(x) -> [outputs]``), so
the swap is one attribute per model and every RapidOCR step around it stays its own.

EasyOCR's CRAFT detector (torch, VGG16-BN) is converted to OpenVINO once and the IR
kept in ``cache_dir()`` (41 MB; the conversion takes ~9 s, loading it 0.1 s): 0.85 s
per 640x480 image against torch's 1.49 s, max |difference| 1.5e-7 in its score maps.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

PRECISION = "f32"
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where converted models are kept: ``GEO_ASSETS_CACHE_DIR``, else ``$XDG_CACHE_HOME/geo_assets``
    (``~/.cache/geo_assets``). Derived files only: deleting it costs one conversion."""
    explicit = os.environ.get("GEO_ASSETS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geo_assets"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str:
    return importlib.metadata.version("openvino")


def _compile(model, threads: int | None):
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": PRECISION, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return ov.Core().compile_model(model if not isinstance(model, Path) else str(model), "CPU", config)


class OpenVinoSession:
    """One compiled model and one infer request; callers serialise calls (the engine's lock)."""

    def __init__(self, model_path: Path, *, threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        self._compiled = _compile(self.model_path, threads)
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


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def craft_ir_path(weights: Path, directory: Path | None = None) -> Path:
    """The cached IR's path, named by everything that shapes it: the weights, easyocr, torch
    (the converter traces the module) and OpenVINO."""
    import torch

    versions = f"{importlib.metadata.version('easyocr')}|{torch.__version__}|{openvino_version()}"
    key = hashlib.sha256(f"{_file_sha256(weights)}|{versions}".encode()).hexdigest()[:20]
    return (directory or cache_dir()) / "openvino" / f"craft-{key}.xml"


def _convert_craft(net, ir_path: Path):
    """Trace ``net`` (any H x W) and keep the IR at ``ir_path``; written to a temporary folder and
    renamed into place, the .xml last, so a reader never finds half of it. Returns the model."""
    import openvino as ov
    import torch

    model = ov.convert_model(net, example_input=torch.zeros(1, 3, 480, 640),
                             input=[ov.PartialShape([1, 3, -1, -1])])
    try:
        ir_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=ir_path.parent, prefix=".craft-") as tmp:
            tmp_xml = Path(tmp) / ir_path.name
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            os.replace(tmp_xml.with_suffix(".bin"), ir_path.with_suffix(".bin"))
            os.replace(tmp_xml, ir_path)
    except OSError as exc:  # a read-only home: convert again next time, nothing lost
        log.warning("could not keep the converted CRAFT model in %s (%s)", ir_path.parent, exc)
    return model


class OpenVinoCraft:
    """EasyOCR's CRAFT detector under OpenVINO, called like the torch module it replaces:
    ``net(x) -> (y, feature)`` (EasyOCR uses only ``y``; ``feature`` is None)."""

    def __init__(self, net, weights: Path, *, threads: int | None = None, directory: Path | None = None) -> None:
        ir_path = craft_ir_path(Path(weights), directory)
        model = Path(ir_path) if ir_path.exists() and ir_path.with_suffix(".bin").exists() else _convert_craft(net, ir_path)
        self.ir_path = ir_path
        self._request = _compile(model, threads).create_infer_request()

    def __call__(self, x):
        import torch

        y = self._request.infer({0: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(np.array(y, copy=True)), None
