"""Every table's schema, in one place: what the assets write, what DuckDB's views read,
and the `dagster/column_schema` the UI shows for each table asset."""

from __future__ import annotations

import pyarrow as pa

RAW_IMAGES_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("captured_at", pa.int64()),
    ("source", pa.string()),
    ("sha256", pa.string()),
    ("path", pa.string()),  # relative to StorageLayout.root, POSIX separators
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("sequence_id", pa.string()),  # '' when the source gave none; the split groups by it
])

RAW_REJECTS_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("captured_at", pa.int64()),  # null when the record had none
])

OCR_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("sha256", pa.string()), ("engine", pa.string()),
    ("words_json", pa.string()), ("n_words", pa.int32()), ("seconds", pa.float32()), ("error", pa.string()),
])

BLUR_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("sha256", pa.string()), ("blur_version", pa.string()),
    ("blurred_path", pa.string()), ("blurred_sha256", pa.string()), ("boxes_json", pa.string()),
    ("n_boxes", pa.int32()), ("ocr_engine", pa.string()), ("ocr_words_json", pa.string()),
    ("seconds", pa.float32()), ("error", pa.string()),
])

CAPTION_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("variant", pa.string()), ("image_sha256", pa.string()),
    ("captioner_id", pa.string()), ("generated", pa.string()), ("ocr_clean", pa.string()),
    ("caption", pa.string()), ("place_names_json", pa.string()), ("has_place_text", pa.bool_()),
])

BLUR_CHECK_CACHE_SCHEMA = pa.schema([
    ("blurred_sha256", pa.string()), ("checker", pa.string()), ("words_json", pa.string()),
])
"""What the second OCR engine read on a blurred image, so a rerun's check costs no OCR."""

OCR_REGIONS_CACHE_SCHEMA = pa.schema([
    ("image_sha256", pa.string()), ("engine", pa.string()), ("regions_json", pa.string()),
])
"""The OCR pass's low-threshold detector regions per image: the blur's candidates, so the
blur runs no detector pass of its own."""

CAPTION_CACHE_SCHEMA = pa.schema([
    ("image_sha256", pa.string()), ("variant", pa.string()), ("captioner_id", pa.string()), ("generated", pa.string()),
])


ATTACK_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("sequence_id", pa.string()),
    ("variant", pa.string()),  # unblurred | blurred
    ("engine", pa.string()),  # rapidocr | easyocr: who read the text
    ("engine_id", pa.string()),  # name:version of that engine
    ("split", pa.string()),  # train | validation | test (assign_splits, default SplitConfig)
    ("text_reliant", pa.bool_()),  # the unblurred caption names a place (null without a caption)
    ("lat", pa.float64()),  # true location
    ("lon", pa.float64()),
    ("guess_lat", pa.float64()),  # null: the attacker abstained
    ("guess_lon", pa.float64()),
    ("source", pa.string()),  # coordinates | place | null
    ("matched", pa.string()),  # coordinate text or canonical place name | null
    ("error_km", pa.float64()),  # null when abstaining
    ("words_sha", pa.string()),  # key of what was read (sha256 of the texts, reading order)
    ("image_sha256", pa.string()),  # the variant's image (raw or blurred sha256)
    ("texts_json", pa.string()),  # the OCR strings the attacker saw
    ("rule", pa.string()),  # the place-name rule that made the guess
])
"""One row per (image, variant, engine): what the gazetteer attacker guessed from that read."""


PREDICTION_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("sequence_id", pa.string()), ("text_reliant", pa.bool_()),
    ("true_lat", pa.float64()), ("true_lon", pa.float64()), ("pred_lat", pa.float64()), ("pred_lon", pa.float64()),
    ("km", pa.float64()), ("cell_hit", pa.bool_()), ("top5_hit", pa.bool_()), ("top10_hit", pa.bool_()),
    ("confidence", pa.float64()), ("source", pa.string()),
    ("confidence_raw", pa.float64()), ("ood_score", pa.float64()), ("ood_flag", pa.bool_()),
])
"""Per-image predictions on the evaluation split: what paired comparisons in the report resample.
`confidence` is after the model's temperature, `confidence_raw` the model's own."""


def embedding_schema(text_dim: int, image_dim: int, fused_dim: int) -> pa.Schema:
    return pa.schema([
        ("image_id", pa.string()), ("variant", pa.string()), ("lat", pa.float64()), ("lon", pa.float64()),
        ("sequence_id", pa.string()), ("image_sha256", pa.string()), ("caption_sha256", pa.string()), ("encoder_key", pa.string()),
        ("text_emb", pa.list_(pa.float32(), text_dim)), ("image_emb", pa.list_(pa.float32(), image_dim)),
        ("fused", pa.list_(pa.float32(), fused_dim)),
        # The cleaned OCR text encoded on its own (zeros when there is none): in the
        # caption vector a place name is buried under the generated words.
        ("ocr_emb", pa.list_(pa.float32(), text_dim)),
    ])
