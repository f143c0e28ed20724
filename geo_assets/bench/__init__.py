"""`geo-assets bench`: stage throughput, incremental cost and scaling, measured in one run.

Three parts, all through the project's own modules (nothing is copied here):

1. Stage throughput on N synthetic images: pull (MapillaryClient against a
   LocalMapillaryServer over the SyntheticWorld: search + download + validate),
   OCR (RapidOCR on all N, EasyOCR on a small subset), blur (detect + blur +
   re-read, the blurred_images asset's work), captions (ImageNet-label
   captioner), text encoder (MiniLM), image encoder (EfficientNet-Lite0), fusion,
   one training epoch of the GeolocatorMLP at geocell 0.05 and 0.1, end-to-end
   prediction of one image (geo_assets.predict_images) and model-only inference.
   Each stage reports images/s and peak memory: VmRSS from /proc/self/status is
   sampled by a background thread during the stage, and the peak minus the RSS
   at the stage start is reported (MiB).
2. Incremental cost through real Dagster materializations of the tile assets
   on K tiles: (a) full build from empty, (b) rebuild with nothing new,
   (c) rebuild after ~5% new images, (d) the seed's non-incremental reference:
   every derived table, cache and blurred image deleted, recomputed from the
   same downloaded images.
3. Scaling: (2) at two or more data-set sizes, with growth ratios.

Tables are printed; everything (with machine info and timestamps) goes to JSON.
Run `geo-assets bench --help` for the options. The machine is assumed shared and
noisy: compare ratios measured in the same run, not absolute numbers across runs.

Modules: ``meter`` (memory meter, machine info), ``stages`` (1), ``incremental`` (2, 3),
``per_image`` (today's tile work against the previous code path, interleaved in one run),
``ocr_engines`` (OCR speed, blur coverage and readability per engine),
``tables`` (printing), ``cli`` (options and the report).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from geo_assets.bench.cli import build_parser, main, parse_sizes, print_report, run_bench  # noqa: E402
from geo_assets.bench.incremental import (  # noqa: E402
    bench_incremental, delete_derived, growth, materialize_tiles, new_images_for, warm_up,
)
from geo_assets.bench.meter import Meter, machine_info, rss_kib  # noqa: E402
from geo_assets.bench.stages import bench_stages, pick_tiles  # noqa: E402
from geo_assets.bench.tables import format_table, growth_table, incremental_table, stage_table  # noqa: E402

__all__ = [
    "Meter", "bench_incremental", "bench_stages", "build_parser", "delete_derived", "format_table", "growth",
    "growth_table", "incremental_table", "machine_info", "main", "materialize_tiles", "new_images_for", "parse_sizes",
    "pick_tiles", "print_report", "rss_kib", "run_bench", "stage_table", "warm_up",
]
