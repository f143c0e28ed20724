"""One blur variant's embedded images as arrays, with what the models and the report need.

Reads three upstream tables through DuckDB views over their Parquet files:
`embeddings` (vectors, true location, sequence id), `captions` (whether the
unblurred OCR text names a place: the text-reliant subset), and
`gazetteer_attack` (the gazetteer attacker's RapidOCR guess for this variant,
used as the model's gazetteer feature). A missing attack table reads as "no
guess" for every image.

Feature sets (`GeoDataset.features(name)`):

    fused        the seed's frozen cross-attention vector (text over image tokens)
    concat       [caption CLS | image CLS] (seed 004)
    concat_ocr   [caption CLS | image CLS | cleaned-OCR-text CLS]: the place name
                 encoded on its own, not buried in the caption vector
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields, replace

import numpy as np

from geo_assets.store.catalog import query_connection
from geo_assets.store.layout import StorageLayout

FEATURES = ("fused", "concat", "concat_ocr")


def assemble_features(name: str, text_emb, image_emb, fused, ocr_emb) -> np.ndarray:
    """The model input `name` (FEATURES) from the stored vectors, (N, D) float32."""
    if name not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {name!r}")
    if name == "fused":
        return np.asarray(fused, dtype=np.float32)
    from geo_assets.embed.fusion import concat_features

    x = concat_features(text_emb, image_emb)
    return concat_features(x, ocr_emb) if name == "concat_ocr" else x


@dataclass
class GeoDataset:
    image_ids: list[str]
    sequence_ids: list[str]
    lat: np.ndarray
    lon: np.ndarray
    text_emb: np.ndarray
    image_emb: np.ndarray
    fused: np.ndarray
    ocr_emb: np.ndarray
    gaz_lat: np.ndarray  # the attacker's guess for this variant; NaN where it abstained
    gaz_lon: np.ndarray
    text_reliant: np.ndarray  # bool: the unblurred OCR text names a place
    row_keys: list[str]
    encoder_key: str = ""

    def __len__(self) -> int:
        return len(self.image_ids)

    def features(self, name: str) -> np.ndarray:
        return assemble_features(name, self.text_emb, self.image_emb, self.fused, self.ocr_emb)

    def block_dims(self, name: str) -> tuple[int, ...]:
        """Widths of the blocks `features(name)` concatenates (for a token fusion)."""
        if name == "fused":
            return (self.fused.shape[1],)
        dims = (self.text_emb.shape[1], self.image_emb.shape[1])
        return dims + ((self.ocr_emb.shape[1],) if name == "concat_ocr" else ())

    @property
    def gaz(self) -> np.ndarray:
        """(N, 2) lat/lon of the gazetteer guess, NaN where there is none."""
        return np.stack([self.gaz_lat, self.gaz_lon], axis=1)

    def subset(self, mask) -> "GeoDataset":
        mask = np.asarray(mask)
        idx = np.flatnonzero(mask) if mask.dtype == bool else mask
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = v[idx]
            elif isinstance(v, list):
                out[f.name] = [v[i] for i in idx.tolist()]
            else:
                out[f.name] = v
        return replace(self, **out)


def _stack(column, dim: int | None = None) -> np.ndarray:
    values = column.to_pylist()
    if not values:
        return np.zeros((0, dim or 0), np.float32)
    return np.asarray(values, dtype=np.float32)


def empty_dataset() -> GeoDataset:
    z = np.zeros(0)
    e = np.zeros((0, 0), np.float32)
    return GeoDataset([], [], z, z, e, e, e, e, z, z, np.zeros(0, bool), [], "")


def load_dataset(layout: StorageLayout, variant: str) -> GeoDataset:
    """Every embedded image of `variant`, across all tiles, in image-id order. Rows
    embedded by another encoder version than the most common one are left out."""
    with query_connection(layout) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "embeddings" not in tables:
            return empty_dataset()
        table = con.sql(
            "SELECT image_id, sequence_id, lat, lon, encoder_key, image_sha256, caption_sha256, "
            "text_emb, image_emb, fused, ocr_emb FROM embeddings WHERE variant = ? ORDER BY image_id",
            params=[variant],
        ).to_arrow_table()
        reliant: set[str] = set()
        if "captions" in tables:
            reliant = {r[0] for r in con.execute(
                "SELECT image_id FROM captions WHERE variant = 'unblurred' AND has_place_text").fetchall()}
        guesses: dict[str, tuple[float, float]] = {}
        if "gazetteer_attack" in tables:
            for image_id, glat, glon in con.execute(
                "SELECT image_id, guess_lat, guess_lon FROM gazetteer_attack "
                "WHERE variant = ? AND engine = 'rapidocr' AND guess_lat IS NOT NULL", [variant]).fetchall():
                guesses[image_id] = (glat, glon)
    keys = table["encoder_key"].to_pylist()
    if not keys:
        return empty_dataset()
    encoder_key, _ = Counter(keys).most_common(1)[0]
    mask = np.array([k == encoder_key for k in keys])
    if not mask.all():
        table = table.filter(mask)
    ids = table["image_id"].to_pylist()
    gaz = np.array([guesses.get(i, (np.nan, np.nan)) for i in ids], dtype=np.float64).reshape(-1, 2)
    row_keys = [f"{i}:{a}:{b}" for i, a, b in zip(ids, table["image_sha256"].to_pylist(),
                                                   table["caption_sha256"].to_pylist())]
    return GeoDataset(
        image_ids=ids,
        sequence_ids=[s or "" for s in table["sequence_id"].to_pylist()],
        lat=np.asarray(table["lat"].to_pylist(), dtype=np.float64),
        lon=np.asarray(table["lon"].to_pylist(), dtype=np.float64),
        text_emb=_stack(table["text_emb"]),
        image_emb=_stack(table["image_emb"]),
        fused=_stack(table["fused"]),
        ocr_emb=_stack(table["ocr_emb"]),
        gaz_lat=gaz[:, 0],
        gaz_lon=gaz[:, 1],
        text_reliant=np.array([i in reliant for i in ids], dtype=bool),
        row_keys=row_keys,
        encoder_key=encoder_key,
    )
