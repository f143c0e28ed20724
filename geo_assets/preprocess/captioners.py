"""Image captioners (seed 3.4.1.1) behind one interface.

- ``ImageNetLabelCaptioner`` (offline default): no captioning weights ship in any
  installable package, so the caption is built from the image encoder's ImageNet
  top-k labels: "a street scene with a picket fence, a church and a valley".
- ``Blip2Captioner``: the seed's BLIP-2 (``Salesforce/blip2-opt-2.7b``) with the
  seed's prompt, from a local directory only.
- ``HfCaptionerFromPath``: BLIP (``BlipForConditionalGeneration``) from a local
  directory only.

Nothing here downloads: Hugging Face models load with ``local_files_only=True``,
and a configured path that does not exist or holds no weights raises
``CaptionerUnavailable`` naming the path. Batched inference; fp16 on CUDA.

The seed's caption text (3.4.1) = generated caption + the cleaned OCR text of the
same image variant: ``build_caption``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

SEED_PROMPT = (
    "Question: Describe this UK location concisely, including road type, buildings, signs, "
    "vegetation, and surroundings. Answer:"
)
CAPTIONER_KINDS = ("imagenet-labels", "blip2", "blip")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")

LabelFn = Callable[[list[np.ndarray]], list[list[tuple[str, float]]]]


class CaptionerUnavailable(FileNotFoundError):
    """The configured captioner's local weights are missing (nothing is ever downloaded)."""


@runtime_checkable
class Captioner(Protocol):
    captioner_id: str

    def caption_batch(self, images_rgb: list[np.ndarray]) -> list[str]: ...


def build_caption(generated: str, cleaned_ocr: str) -> str:
    """Seed 3.4.1: the generated caption with the cleaned OCR text appended."""
    parts = [" ".join((generated or "").split()), " ".join((cleaned_ocr or "").split())]
    return " ".join(p for p in parts if p)


def resolve_device(device: str | None = "auto") -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


# --------------------------------------------------------------------------- ImageNet labels


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1k class names, from torchvision's metadata (no download)."""
    try:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES)
    except ImportError:  # pragma: no cover - older/newer torchvision layout
        from torchvision.models import ResNet50_Weights

        return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


_COAST = {"seashore", "sandbar", "promontory", "cliff", "breakwater", "lakeside", "boathouse", "dock",
          "pier", "beacon", "paddle", "canoe", "speedboat", "yawl", "catamaran", "schooner", "liner"}
_COUNTRY = {"valley", "alp", "hay", "thatch", "barn", "ox", "ram", "bighorn", "worm fence", "stone wall",
            "tractor", "harvester", "plow", "hog", "sorrel", "megalith", "volcano", "cliff dwelling",
            "rapeseed", "daisy", "hen", "bee"}
_MASS = {"hay", "rapeseed", "mosquito net", "chain mail", "honeycomb"}


def _label_phrase(label: str) -> str:
    name = label.split(",")[0].strip().replace("_", " ")
    low = name.lower()
    if low in _MASS:
        return low
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return low  # already plural: "shoji", "suspension bridges"
    article = "an" if low[:1] in "aeiou" else "a"
    return f"{article} {low}"


def _join(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption_from_labels(labels: Sequence[tuple[str, float]], *, k: int = 3, min_prob: float = 0.05) -> str:
    """"a street scene with a picket fence, a church and a valley" from top labels."""
    ranked = sorted(((str(lab), float(p)) for lab, p in labels), key=lambda lp: -lp[1])
    names: list[str] = []
    for i, (lab, p) in enumerate(ranked):
        if len(names) >= k:
            break
        if i > 0 and p < min_prob:
            break
        phrase = _label_phrase(lab)
        if phrase and phrase not in names:
            names.append(phrase)
    bare = {n.split(" ", 1)[-1] for n in names}
    if bare & _COAST:
        scene = "a coastal scene"
    elif bare & _COUNTRY:
        scene = "a rural scene"
    else:
        scene = "a street scene"
    return f"{scene} with {_join(names)}" if names else scene


class ImageNetLabelCaptioner:
    """Caption from the ImageNet top-k labels of an image classifier (offline default).

    ``label_fn(images_rgb) -> [[(label, prob), ...], ...]`` is injected; in the
    project it is ``EfficientNetLite0Encoder().top_labels(images, k)``."""

    def __init__(self, label_fn: LabelFn, *, k: int = 3, min_prob: float = 0.05,
                 encoder_id: str = "efficientnet-lite0", version: str = "v1"):
        if label_fn is None or not callable(label_fn):
            raise ValueError("ImageNetLabelCaptioner needs a label_fn(images) -> [[(label, prob), ...]]")
        self.label_fn = label_fn
        self.k = k
        self.min_prob = min_prob
        self.captioner_id = f"imagenet-labels:{encoder_id}:{version}:k{k}"

    def caption_batch(self, images_rgb: list[np.ndarray]) -> list[str]:
        images = list(images_rgb)
        if not images:
            return []
        labels = self.label_fn(images)
        if len(labels) != len(images):
            raise ValueError(f"label_fn returned {len(labels)} label lists for {len(images)} images")
        return [caption_from_labels(lab, k=self.k, min_prob=self.min_prob) for lab in labels]


# --------------------------------------------------------------------------- Hugging Face (local only)


def check_local_model(model_path: str | Path | None, kind: str) -> Path:
    """The model directory, or CaptionerUnavailable naming the path and what is missing."""
    if not model_path:
        raise CaptionerUnavailable(
            f"captioner {kind!r} needs model_path: a local directory with its weights "
            "(config.json + model.safetensors); nothing is downloaded"
        )
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise CaptionerUnavailable(f"captioner {kind!r}: model path {str(path)!r} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise CaptionerUnavailable(f"captioner {kind!r}: no config.json in {str(path)!r}")
    if not any((path / f).is_file() for f in WEIGHT_FILES) and not list(path.glob("*.safetensors")):
        raise CaptionerUnavailable(
            f"captioner {kind!r}: no weights in {str(path)!r} (expected one of {', '.join(WEIGHT_FILES)})"
        )
    return path


def _model_digest(path: Path, extra: str) -> str:
    """Short id of a local model: config, weight file names and sizes, generation settings."""
    h = hashlib.sha256()
    h.update((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin") and f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    h.update(extra.encode())
    return h.hexdigest()[:10]


class _HfCaptioner:
    kind = "hf"
    model_type: str | None = None  # config.json "model_type" the class can load

    def __init__(self, model_path: str | Path, device: str | None = "auto", prompt: str | None = None, *,
                 max_new_tokens: int = 40, batch_size: int = 8, num_beams: int = 1):
        import torch

        self.model_path = check_local_model(model_path, self.kind)
        try:
            model_type = json.loads((self.model_path / "config.json").read_text()).get("model_type")
        except (OSError, ValueError) as exc:
            raise CaptionerUnavailable(f"captioner {self.kind!r}: unreadable config.json in {str(self.model_path)!r}") from exc
        if self.model_type and model_type != self.model_type:
            raise CaptionerUnavailable(f"captioner {self.kind!r}: {str(self.model_path)!r} holds a {model_type!r} model, "
                                       f"expected {self.model_type!r}")
        self.device = resolve_device(device)
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size))
        self.num_beams = int(num_beams)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        try:
            self.processor, self.model = self._load()
        except (OSError, ValueError) as exc:
            raise CaptionerUnavailable(f"captioner {self.kind!r}: could not load {str(self.model_path)!r} "
                                       f"offline: {exc}") from exc
        self.model.to(self.device).eval()
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # decoder-only generation needs left padding
        settings = json.dumps({"prompt": prompt, "max_new_tokens": self.max_new_tokens, "beams": self.num_beams})
        self.captioner_id = f"{self.kind}:{self.model_path.name}:{_model_digest(self.model_path, settings)}"
        self._lock = threading.Lock()

    def _load(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _inputs(self, images: list[np.ndarray]):
        kwargs = {"images": images, "return_tensors": "pt"}
        if self.prompt:
            kwargs.update(text=[self.prompt] * len(images), padding=True)
        inputs = self.processor(**kwargs)
        out = {}
        for key, value in inputs.items():
            if hasattr(value, "to"):
                value = value.to(self.device)
                if key == "pixel_values":
                    value = value.to(self.dtype)
            out[key] = value
        return out

    def _decode(self, generated, inputs) -> list[str]:
        ids = inputs.get("input_ids")
        if ids is not None and generated.shape[1] >= ids.shape[1] and bool((generated[:, : ids.shape[1]] == ids).all()):
            generated = generated[:, ids.shape[1]:]  # decoder-only models echo the prompt
        texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        out = []
        for text in texts:
            text = " ".join(str(text).split())
            if self.prompt and text.startswith(self.prompt):
                text = text[len(self.prompt):].strip()
            out.append(text)
        return out

    def caption_batch(self, images_rgb: list[np.ndarray]) -> list[str]:
        import torch

        images = [np.ascontiguousarray(img[..., :3]) for img in images_rgb]
        captions: list[str] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                inputs = self._inputs(images[start : start + self.batch_size])
                generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                                num_beams=self.num_beams, do_sample=False)
                captions.extend(self._decode(generated, inputs))
        return captions


class Blip2Captioner(_HfCaptioner):
    """BLIP-2 (the seed's blip2-opt-2.7b) from a local directory, prompted with the seed's question."""

    kind = "blip2"
    model_type = "blip-2"

    def __init__(self, model_path: str | Path, device: str | None = "auto", prompt: str | None = SEED_PROMPT, **kwargs):
        super().__init__(model_path, device, prompt, **kwargs)

    def _load(self):
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        processor = Blip2Processor.from_pretrained(str(self.model_path), local_files_only=True)
        model = Blip2ForConditionalGeneration.from_pretrained(str(self.model_path), local_files_only=True,
                                                              dtype=self.dtype)
        return processor, model


class HfCaptionerFromPath(_HfCaptioner):
    """BLIP (BlipForConditionalGeneration, e.g. Salesforce/blip-image-captioning-base) from a
    local directory; ``prompt`` is an optional conditional prefix such as "a picture of"."""

    kind = "blip"
    model_type = "blip"

    def _load(self):
        from transformers import BlipForConditionalGeneration, BlipProcessor

        processor = BlipProcessor.from_pretrained(str(self.model_path), local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(str(self.model_path), local_files_only=True,
                                                             dtype=self.dtype)
        return processor, model

    def _decode(self, generated, inputs) -> list[str]:
        texts = super()._decode(generated, inputs)
        if self.prompt:  # BLIP repeats a conditional prefix in its output
            p = self.prompt.strip().lower()
            texts = [t[len(p):].strip() if t.lower().startswith(p) else t for t in texts]
        return texts


# --------------------------------------------------------------------------- factory

_CACHE: dict[tuple, Captioner] = {}
_CACHE_LOCK = threading.Lock()


def make_captioner(kind: str, model_path: str | None = None, label_fn: LabelFn | None = None, *,
                   device: str | None = "auto", **kwargs) -> Captioner:
    """``imagenet-labels`` (needs ``label_fn``), ``blip2`` or ``blip`` (need a local
    ``model_path``). Hugging Face captioners are cached per (kind, path, device, options)."""
    key_kind = (kind or "").strip().lower()
    if key_kind in ("imagenet", "labels", "imagenet_labels"):
        key_kind = "imagenet-labels"
    if key_kind not in CAPTIONER_KINDS:
        raise ValueError(f"unknown captioner kind {kind!r}; choose one of {', '.join(CAPTIONER_KINDS)}")
    if key_kind == "imagenet-labels":
        if label_fn is None:
            raise ValueError("captioner 'imagenet-labels' needs label_fn (the image encoder's top_labels)")
        return ImageNetLabelCaptioner(label_fn, **kwargs)
    path = check_local_model(model_path, key_kind)
    dev = resolve_device(device)
    key = (key_kind, str(path.resolve()), dev, json.dumps(kwargs, sort_keys=True, default=str))
    with _CACHE_LOCK:
        cap = _CACHE.get(key)
        if cap is None:
            cls = Blip2Captioner if key_kind == "blip2" else HfCaptionerFromPath
            cap = cls(path, dev, **kwargs)
            _CACHE[key] = cap
        return cap


def build_captioner(kind: str = "imagenet-labels", model_path: str | None = None) -> Captioner:
    """The captioner as the `captions` asset builds it (CaptionerResource) and `geo-assets
    predict` too: `imagenet-labels` gets the packaged image encoder's top-5 labels."""
    label_fn = None
    if (kind or "").strip().lower() in ("imagenet-labels", "imagenet", "labels", "imagenet_labels"):
        from geo_assets.embed.encoders import make_image_encoder

        encoder = make_image_encoder("efficientnet-lite0")
        label_fn = lambda images: encoder.top_labels(images, k=5)  # noqa: E731
    return make_captioner(kind, model_path, label_fn=label_fn)


def clear_captioner_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()

