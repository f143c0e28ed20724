"""Captioners behind one interface (seed 3.4.1.1).

- `imagenet-labels` (offline default): no captioning weights ship in any package,
  so the caption is built from the image encoder's ImageNet top-k labels.
- `blip2`: the seed's BLIP-2 (Salesforce/blip2-opt-2.7b) with the seed's prompt,
  loaded from a local folder or the local Hugging Face cache only.
- `blip`: any BLIP captioning checkpoint by local path.
Nothing is ever downloaded: a configured path that is missing fails with a
message naming it.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

SEED_PROMPT = (
    "Question: Describe this UK location concisely, including road type, buildings, signs, "
    "vegetation, and surroundings. Answer:"
)
CAPTIONER_KINDS = ("imagenet-labels", "blip2", "blip")

LabelFn = Callable[[list[np.ndarray]], list[list[tuple[str, float]]]]


class Captioner(Protocol):
    captioner_id: str

    def caption_batch(self, images_rgb: list[np.ndarray]) -> list[str]: ...


class CaptionerConfigError(ValueError):
    pass


def build_caption(generated: str, cleaned_ocr: str) -> str:
    """Seed 3.4.1: the generated caption with the cleaned OCR text appended."""
    generated = " ".join((generated or "").split())
    cleaned_ocr = " ".join((cleaned_ocr or "").split())
    return f"{generated} {cleaned_ocr}".strip()


def _join(labels: Sequence[str]) -> str:
    if not labels:
        return ""
    if len(labels) == 1:
        return labels[0]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


class ImageNetLabelCaptioner:
    """'a street scene with a picket fence, a church and a valley' from top-k labels."""

    VERSION = "v1"

    def __init__(self, label_fn: LabelFn, k: int = 5, min_prob: float = 0.03, label_source: str = "efficientnet-lite0"):
        self._label_fn = label_fn
        self.k, self.min_prob = k, min_prob
        self.captioner_id = f"imagenet-labels:{label_source}:k{k}:{self.VERSION}"

    def caption_batch(self, images_rgb: list[np.ndarray]) -> list[str]:
        if not images_rgb:
            return []
        out = []
        for labels in self._label_fn(list(images_rgb)):
            names = []
            for name, prob in labels[: self.k]:
                short = name.split(",")[0].strip().lower()
                if (prob >= self.min_prob or not names) and short not in names:
                    names.append(short)
            out.append(f"a street scene with {_join(['a ' + n for n in names])}" if names else "a street scene")
        return out


def _resolve_local(model_path: str | None, what: str):
    from pathlib import Path

    if not model_path:
        raise CaptionerConfigError(f"captioner {what!r} needs model_path (a local folder or a cached hub id)")
    path = Path(model_path).expanduser()
    if path.is_dir():
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise CaptionerConfigError(f"captioner {what!r}: no weights (*.safetensors / *.bin) in {path}")
        return str(path)
    if "/" in model_path and not path.exists():
        # A hub id: allowed only if it is already in the local cache.
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(model_path, local_files_only=True)
        except Exception as exc:
            raise CaptionerConfigError(
                f"captioner {what!r}: {model_path} is neither a local folder nor in the local Hugging Face cache "
                "(nothing is downloaded)"
            ) from exc
    raise CaptionerConfigError(f"captioner {what!r}: model path {path} does not exist")


def _device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _HfCaptioner:
    kind = "hf"
    prompt: str | None = None

    def __init__(self, model_path: str, device: str | None = "auto", max_new_tokens: int = 40, batch_size: int = 8):
        import torch

        self.path = _resolve_local(model_path, self.kind)
        self.device = _device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.processor, self.model = self._load()
        self.model.to(self.device).eval()
        from pathlib import Path

        self.captioner_id = f"{self.kind}:{Path(self.path).name}:{type(self.model).__name__}"

    def _load(self):
        raise NotImplementedError

    def caption_batch(self, images_rgb: list[np.ndarray]) -> list[str]:
        import torch
        from PIL import Image

        out: list[str] = []
        for start in range(0, len(images_rgb), self.batch_size):
            pil = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images_rgb[start : start + self.batch_size]]
            kwargs = {"images": pil, "return_tensors": "pt"}
            if self.prompt:
                kwargs["text"] = [self.prompt] * len(pil)
            inputs = self.processor(**kwargs).to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            texts = self.processor.batch_decode(ids, skip_special_tokens=True)
            if self.prompt:
                texts = [t.split("Answer:", 1)[-1] if "Answer:" in t else t for t in texts]
            out.extend(" ".join(t.split()) for t in texts)
        return out


class Blip2Captioner(_HfCaptioner):
    """The seed's BLIP-2 with the seed's prompt; fp16 on CUDA."""

    kind = "blip2"
    prompt = SEED_PROMPT

    def _load(self):
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        processor = Blip2Processor.from_pretrained(self.path, local_files_only=True)
        model = Blip2ForConditionalGeneration.from_pretrained(self.path, local_files_only=True, torch_dtype=self.dtype)
        return processor, model


class BlipCaptioner(_HfCaptioner):
    kind = "blip"

    def _load(self):
        from transformers import BlipForConditionalGeneration, BlipProcessor

        processor = BlipProcessor.from_pretrained(self.path, local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(self.path, local_files_only=True, torch_dtype=self.dtype)
        return processor, model


_CACHE: dict[tuple, Captioner] = {}


def make_captioner(kind: str = "imagenet-labels", model_path: str | None = None, label_fn: LabelFn | None = None,
                   device: str | None = "auto") -> Captioner:
    """Build (once per process) the configured captioner."""
    if kind == "imagenet-labels":
        if label_fn is None:
            raise CaptionerConfigError("imagenet-labels captioner needs a label_fn (the image encoder's top_labels)")
        return ImageNetLabelCaptioner(label_fn)
    if kind not in CAPTIONER_KINDS:
        raise CaptionerConfigError(f"unknown captioner {kind!r}; choose one of {CAPTIONER_KINDS}")
    key = (kind, model_path, device)
    if key not in _CACHE:
        _CACHE[key] = (Blip2Captioner if kind == "blip2" else BlipCaptioner)(model_path, device=device)
    return _CACHE[key]
