"""Axis-aligned lat/lon boxes and the seed's two UK query boxes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class BBox:
    """A lon/lat box. Order of fields follows Mapillary's `bbox=minLon,minLat,maxLon,maxLat`."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def __post_init__(self) -> None:
        if not (-180 <= self.min_lon < self.max_lon <= 180):
            raise ValueError(f"bad longitude range in {self}")
        if not (-90 <= self.min_lat < self.max_lat <= 90):
            raise ValueError(f"bad latitude range in {self}")

    @property
    def width(self) -> float:
        return self.max_lon - self.min_lon

    @property
    def height(self) -> float:
        return self.max_lat - self.min_lat

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def centre(self) -> tuple[float, float]:
        """(lat, lon) of the middle of the box."""
        return (self.min_lat + self.max_lat) / 2, (self.min_lon + self.max_lon) / 2

    def contains(self, lat: float, lon: float) -> bool:
        # Half-open on the max side so adjacent tiles never both own a point.
        return self.min_lat <= lat < self.max_lat and self.min_lon <= lon < self.max_lon

    def quadrants(self) -> list["BBox"]:
        mid_lat, mid_lon = self.centre
        return [
            BBox(self.min_lon, self.min_lat, mid_lon, mid_lat),
            BBox(mid_lon, self.min_lat, self.max_lon, mid_lat),
            BBox(self.min_lon, mid_lat, mid_lon, self.max_lat),
            BBox(mid_lon, mid_lat, self.max_lon, self.max_lat),
        ]

    def to_query(self) -> str:
        """Mapillary's `bbox` parameter: minLon,minLat,maxLon,maxLat."""
        return f"{self.min_lon:.6f},{self.min_lat:.6f},{self.max_lon:.6f},{self.max_lat:.6f}"

    @classmethod
    def from_query(cls, text: str) -> "BBox":
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise ValueError(f"bbox needs 4 comma-separated numbers, got {text!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"bbox has a non-numeric part: {text!r}") from exc
        return cls(*values)


# The seed queried two boxes that together cover the UK without clipping
# mainland Europe: one for Scotland, Northern Ireland and northern England,
# one for the rest of England and Wales.
UK_NORTH = BBox(min_lon=-8.2, min_lat=54.0, max_lon=-0.6, max_lat=60.9)
UK_SOUTH = BBox(min_lon=-6.4, min_lat=49.9, max_lon=1.8, max_lat=54.0)
UK_REGION: tuple[BBox, ...] = (UK_NORTH, UK_SOUTH)


def region_bounds(boxes: tuple[BBox, ...] | list[BBox]) -> BBox:
    """Smallest box holding every box of a region (the geocell grid spans it)."""
    return BBox(
        min(b.min_lon for b in boxes),
        min(b.min_lat for b in boxes),
        max(b.max_lon for b in boxes),
        max(b.max_lat for b in boxes),
    )


def in_region(lat: float, lon: float, boxes: tuple[BBox, ...] | list[BBox]) -> bool:
    return any(b.contains(lat, lon) for b in boxes)
