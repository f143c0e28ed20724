"""The per-row work of the `embeddings` asset, shared with `geo-assets predict` and the bench:
caption, OCR-text and image encodings of a batch and their fusion, as the rows' vector columns.
Serving calls the same function as training, so its features cannot drift from the stored rows."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

VECTOR_COLUMNS = ("text_emb", "image_emb", "fused", "ocr_emb")
"""The `embeddings` table's vector columns (store/schemas.embedding_schema)."""


@dataclass
class EncodedBatch:
    text: np.ndarray
    """(N, text dim) CLS of the caption."""
    ocr: np.ndarray
    """(N, text dim) CLS of the cleaned OCR text alone, zeros where there is none."""
    image: np.ndarray
    """(N, image dim) image CLS."""
    fused: np.ndarray
    """(N, fused dim) cross-attention fusion of the caption CLS and the image tokens."""
    seconds: dict = field(default_factory=dict)
    """text_s, image_s, fusion_s spent on this batch."""

    def row(self, i: int) -> dict[str, np.ndarray]:
        """Row `i`'s vector columns (VECTOR_COLUMNS), as the asset writes them."""
        return {"text_emb": self.text[i], "image_emb": self.image[i], "fused": self.fused[i], "ocr_emb": self.ocr[i]}


def encode_batch(text_encoder, image_encoder, fusion, captions: list[str], ocr_texts: list[str],
                 images_rgb: list[np.ndarray]) -> EncodedBatch:
    """Encode one batch of rows (caption, cleaned OCR text, RGB image), as the asset stores them."""
    t0 = time.perf_counter()
    captions, ocr_texts = list(captions), list(ocr_texts)
    # One encoder call for both (length-sorted batches pack better than two calls);
    # an empty OCR text gets zeros, as encode_optional_texts gives it.
    present = [i for i, t in enumerate(ocr_texts) if t and t.strip()]
    both = text_encoder.encode(captions + [ocr_texts[i] for i in present])
    text_cls = both[: len(captions)]
    ocr_cls = np.zeros((len(ocr_texts), text_encoder.dim), dtype=np.float32)
    if present:
        ocr_cls[present] = both[len(captions):]
    t1 = time.perf_counter()
    encoded = image_encoder.encode(list(images_rgb))
    t2 = time.perf_counter()
    fused = fusion.fuse(text_cls, encoded.tokens)
    t3 = time.perf_counter()
    return EncodedBatch(text_cls.astype(np.float32), ocr_cls.astype(np.float32), encoded.cls.astype(np.float32),
                        np.asarray(fused, dtype=np.float32),
                        {"text_s": t1 - t0, "image_s": t2 - t1, "fusion_s": t3 - t2})
