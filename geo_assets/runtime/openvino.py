"""Run models with OpenVINO on CPU: RapidOCR's ONNX models, and torch modules converted
once (EasyOCR's CRAFT detector, EfficientNet-Lite0).

Why: on CPU, OpenVINO's CPU plugin runs these models faster than onnxruntime and torch
with the same outputs up to float rounding (the words and low-threshold regions read
are the same; numbers in PERFORMANCE.md). Precision is f32 unless asked: on CPUs with
AMX, OpenVINO's default would be bf16, which moves the detector's probability map
enough to change what is read. EasyOCR's CRAFT is the one model asked for bf16 (where
the CPU runs it natively), because it reads the same words there (PERFORMANCE.md).

Same call shape as rapidocr's ``OrtInferSession`` (``session(x) -> [outputs]``), so
the swap is one attribute per model and every RapidOCR step around it stays its own.

Torch modules are converted to OpenVINO once and the IR kept in ``cache_dir()``
(``OpenVinoModule``): EasyOCR's CRAFT detector (VGG16-BN) and EfficientNet-Lite0, each
converted in seconds on first use and loaded from the cache after.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from geo_assets.runtime.threads import env_whole_number, model_threads

PRECISION = "f32"

SHAPE_CACHE_ENV = "GEO_ASSETS_OV_SHAPE_CACHE"
"""Entries of OpenVINO's per-input-shape kernel cache, per compiled model (the CPU plugin's
``CPU_RUNTIME_CACHE_CAPACITY``; its own default is 5,000). The windowed re-reads give the
detector a new input shape for nearly every window, and that cache made a run process grow
with the images it read: 1,024 entries kept the time and cut a run's peak by 11-19%, 64 cut
it more but ran slower (PERFORMANCE.md, issue 25)."""
DEFAULT_SHAPE_CACHE = 1024
MAX_SHAPE_CACHE = 100_000


def shape_cache_capacity() -> int:
    """The shape-cache size: the environment's, else ``DEFAULT_SHAPE_CACHE``."""
    n = env_whole_number(SHAPE_CACHE_ENV, 0, MAX_SHAPE_CACHE, "cache entries")
    return DEFAULT_SHAPE_CACHE if n is None else n


log = logging.getLogger(__name__)
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where converted models are kept: ``GEO_ASSETS_CACHE_DIR``, else ``$XDG_CACHE_HOME/geo_assets``
    (``~/.cache/geo_assets``). Derived files only: deleting it costs one conversion."""
    explicit = os.environ.get("GEO_ASSETS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geo_assets"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def dist_version(dist: str) -> str:
    """An installed distribution's version ("unknown" when it is not installed)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def openvino_version() -> str:
    return dist_version("openvino")


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AMX or AVX-512 BF16), as OpenVINO's CPU plugin sees it."""
    ov = import_openvino()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _compile(model, threads: int | None, precision: str = PRECISION):
    ov = import_openvino()

    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    config["CPU_RUNTIME_CACHE_CAPACITY"] = shape_cache_capacity()
    threads = threads or model_threads()
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


def ir_path(name: str, weights: Path, directory: Path | None = None) -> Path:
    """A converted model's cached IR, named by everything that shapes it: the weights, the
    package that defines the module, torch (the converter traces it) and OpenVINO."""
    import torch

    versions = f"{torch.__version__}|{openvino_version()}"
    key = hashlib.sha256(f"{name}|{_file_sha256(weights)}|{versions}".encode()).hexdigest()[:20]
    return (directory or cache_dir()) / "openvino" / f"{name.split(':')[0]}-{key}.xml"


def import_openvino():
    """``import openvino`` with its usage telemetry off.

    OpenVINO sends events to Google Analytics: ``import openvino`` sends one (its model
    converter's ``__init__``), and so does every ``convert_model``, unless a consent file in
    the user's home says no; deciding, it writes ``~/intel/``. A data pipeline must not
    phone home (nor write there), and has no network in CI. The import runs with ``CI=true``,
    the switch OpenVINO's own checker honours, and the converter then uses OpenVINO's no-op
    telemetry stub. The only place this project imports openvino."""
    if "openvino" not in sys.modules:
        with _LOCK:
            previous = os.environ.get("CI")
            os.environ["CI"] = "true"
            try:
                import openvino  # noqa: F401
            finally:
                if previous is None:
                    os.environ.pop("CI", None)
                else:
                    os.environ["CI"] = previous
    from openvino.tools.ovc import convert_impl, telemetry_stub, telemetry_utils

    convert_impl.tm = telemetry_stub
    telemetry_utils.tm = telemetry_stub
    return sys.modules["openvino"]


def digest_path(path: Path) -> Path:
    """The digest file kept beside a converted model's IR: sha256 of its .xml and .bin."""
    return path.with_suffix(".sha256")


def _ir_digest(path: Path) -> dict[str, str]:
    return {"xml": _file_sha256(path), "bin": _file_sha256(path.with_suffix(".bin"))}


def cached_ir_ok(path: Path) -> bool:
    """True when the IR at ``path`` and its .bin exist and match the digest written when they
    were converted. A file planted in (or damaged in) the cache does not: a swapped detector
    could switch blurring off, a swapped encoder change every embedding. The check catches a
    file replaced without its digest; the folder is kept private (0700) against the rest."""
    import json

    if not (path.exists() and path.with_suffix(".bin").exists()):
        return False
    try:
        stored = json.loads(digest_path(path).read_text())
    except (OSError, ValueError):
        log.warning("converted model %s has no readable digest: converting again", path.name)
        return False
    if stored != _ir_digest(path):
        log.warning("converted model %s does not match its digest: converting again", path.name)
        return False
    return True


def _convert(net, example_input, input_shape: list[int], path: Path):
    """Trace ``net`` (a module, or a function building it) and keep the IR at ``path``; written
    to a temporary folder and renamed into place, the .xml last, so a reader never finds half
    of it. Returns the model."""
    ov = import_openvino()
    import torch

    if not isinstance(net, torch.nn.Module):
        net = net()
    model = ov.convert_model(net, example_input=example_input, input=[ov.PartialShape(input_shape)])
    try:
        import json

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".convert-") as tmp:
            tmp_xml = Path(tmp) / path.name
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            tmp_digest = digest_path(tmp_xml)
            tmp_digest.write_text(json.dumps(_ir_digest(tmp_xml)))
            os.replace(tmp_xml.with_suffix(".bin"), path.with_suffix(".bin"))
            os.replace(tmp_xml, path)
            os.replace(tmp_digest, digest_path(path))  # last: until it lands, the IR reads as unchecked
    except OSError as exc:  # a read-only home: convert again next time, nothing lost
        log.warning("could not keep the converted model in %s (%s)", path.parent, exc)
    return model


class OpenVinoModule:
    """A torch module run by OpenVINO (f32): converted once, its IR cached in ``cache_dir()``.

    ``net`` is the module, or a function that builds it (called only when the IR is not cached
    yet). ``name`` says which module and package version (part of the cache key, with the
    weights' sha256); ``input_shape`` is the input's shape with -1 where it may vary. Called
    with a float32 array, returns the module's outputs as arrays. ``precision`` is the
    inference precision asked for ("f32" unless a caller has measured that bf16 reads the
    same); ``self.precision`` is the one the CPU plugin actually runs."""

    def __init__(self, net, *, name: str, weights: Path, example_input, input_shape: list[int],
                 threads: int | None = None, directory: Path | None = None, precision: str = PRECISION) -> None:
        self.ir_path = ir_path(name, Path(weights), directory)
        cached = cached_ir_ok(self.ir_path)
        model = self.ir_path if cached else _convert(net, example_input, input_shape, self.ir_path)
        self._compiled = _compile(model, threads, precision)
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16"
        self._request = self._compiled.create_infer_request()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(result[i], copy=True) for i in range(len(self._compiled.outputs))]


class OpenVinoCraft:
    """EasyOCR's CRAFT detector under OpenVINO, called like the torch module it replaces:
    ``net(x) -> (y, feature)`` (EasyOCR uses only ``y``; ``feature`` is None)."""

    def __init__(self, net, weights: Path, *, threads: int | None = None, directory: Path | None = None,
                 precision: str = PRECISION) -> None:
        import torch

        self._module = OpenVinoModule(net, name=f"craft:easyocr-{dist_version('easyocr')}",
                                      weights=weights, example_input=torch.zeros(1, 3, 480, 640),
                                      input_shape=[1, 3, -1, -1], threads=threads, directory=directory,
                                      precision=precision)
        self.ir_path = self._module.ir_path
        self.precision = self._module.precision

    def __call__(self, x):
        import torch

        y = self._module(x.detach().cpu().numpy())[0]
        return torch.from_numpy(y), None
