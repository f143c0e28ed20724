"""The synthetic world's text assumption in the privacy report.

Pure functions from data to Markdown lines:

* `sources_share`: which image sources the report's data came from, and the place-text
  share of each synthetic one (read from the `source` column of raw_images);
* `assumption_header`: the header paragraph stating the share, what it decides, and that
  it does not apply to real images;
* `sensitivity_lines`: the table of the paired blurred-minus-unblurred difference within
  10 km at several shares (`geo-assets sensitivity`), or how to compute it;
* `seed_comparison`: where the synthetic world sits against the seed's real-data Figure 18,
  computed from the numbers.
"""

from __future__ import annotations

import math

from geo_assets.synthetic.world import DASHCAM_SEQUENCE_RATE, DEFAULT_PLACE_TEXT_SHARE

SETTING = "GEO_ASSETS_PLACE_TEXT_SHARE"
SHARE_MARK = ":place-text="


def source_share(source: str) -> float | None:
    """The place-text share of a stored `source` value; None for a source that is not synthetic."""
    if not source.startswith("synthetic:"):
        return None
    if SHARE_MARK in source:
        value = source.split(SHARE_MARK, 1)[1].split(":", 1)[0]
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"unreadable place-text share in source {source!r}") from None
    return DEFAULT_PLACE_TEXT_SHARE


def sources_share(sources: list[str]) -> dict[str, float | None]:
    """{source: share or None}, sorted by source."""
    return {s: source_share(s) for s in sorted(set(sources))}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def assumption_header(sources: list[str] | None) -> list[str]:
    """Markdown lines for the report's header: the assumption, its value, what it decides."""
    shares = sources_share(sources or [])
    synthetic = {s: v for s, v in shares.items() if v is not None}
    real = [s for s, v in shares.items() if v is None]
    what = ("It is an assumption of the synthetic world, not something measured: how often an image's text names "
            "the place it is in (a place-name sign, a road sign to the town, a shop named after it). It decides "
            "most of what blurring buys below, since blurring can only take away the place names there are; "
            f"real street photos name their place far less often. Dashcam overlays ({_pct(DASHCAM_SEQUENCE_RATE)} of "
            "drives) print coordinates whatever the share.")
    if not shares:
        return [f"**Text assumption (place-text share, `{SETTING}`): unknown**: no stored images say which source "
                "they came from.", ""]
    if not synthetic:
        return [f"**Text assumption (place-text share, `{SETTING}`): does not apply.** The images come from "
                + ", ".join(f"`{s.split(':', 1)[0]}`" for s in real)
                + ", not the synthetic world: how often their text names their place is whatever those photos hold, "
                "and nothing here was set by it.", ""]
    values = sorted(set(synthetic.values()))
    value_text = " and ".join(f"{v:g}" for v in values)
    lines = [f"**Text assumption of the synthetic world: place-text share = {value_text}** (`{SETTING}`; default "
             f"{DEFAULT_PLACE_TEXT_SHARE:g}, the sign rate: every sign names its place): about {_pct(values[0])}"
             + (f" to {_pct(values[-1])}" if len(values) > 1 else "")
             + " of the world's images carry text that names where they are. " + what]
    if len(values) > 1:
        lines.append("The stored images come from worlds with different shares (" + ", ".join(
            f"`{s}`" for s in synthetic) + "): the numbers below mix them.")
    if real:
        lines.append("Some images come from a real source (" + ", ".join(f"`{s}`" for s in real)
                     + "), where the assumption does not apply.")
    return [" ".join(lines), ""]


def _diff_cell(d: dict | None) -> str:
    if not d or d.get("diff") is None:
        return "-"
    if d.get("low") is None or d.get("high") is None:
        return f"{d['diff']:+.1f} [-]"
    return f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def sensitivity_lines(result: dict | None, command: str = "geo-assets sensitivity") -> list[str]:
    """The sensitivity section: a table per share, or the command that computes it."""
    lines = ["## The text assumption varied: what blurring buys at other place-text shares", ""]
    if not result or not result.get("rows"):
        return lines + [f"Not computed yet: run `{command}` (about 10-15 minutes on 2 cores; it builds a small "
                        "world per share in its own folders and trains the two models of one geocell size in "
                        "each), then materialize `privacy_report` again.", ""]
    tiles = result.get("tiles") or []
    lines += [f"Blurred minus unblurred within 10 km on all test images, paired on the same images, with the 95% "
              f"paired bootstrap interval that resamples whole sequences. Each share is its own small world: "
              f"{len(tiles)} tiles x {result.get('images_per_tile', '?')} images, geocell {result.get('geocell', '?')}, "
              f"the same image ids at every share (only the signs' words differ), so these rows compare with each "
              f"other, not with the full run above; at this size the intervals are wide. Computed by "
              f"`{result.get('command', command)}` in {result.get('seconds', 0):.0f} s.", "",
              "| Place-text share | Images naming their place | Test images (text-reliant) | <=10 km unblurred % | "
              "<=10 km blurred % | Difference [95% CI] | Significant |", "|---|---|---|---|---|---|---|"]
    for row in sorted(result["rows"], key=lambda r: -r["place_text_share"]):
        d = (row.get("all") or {}).get("within_10km_pct") or {}
        mark = " (default)" if row["place_text_share"] == result.get("default_share", DEFAULT_PLACE_TEXT_SHARE) else ""
        sig = "-" if d.get("significant") is None else ("yes" if d["significant"] else "no")
        a = "-" if d.get("a") is None else f"{d['a']:.1f}"
        b = "-" if d.get("b") is None else f"{d['b']:.1f}"
        lines.append(f"| {row['place_text_share']:g}{mark} | {100 * row.get('place_text_rate', 0.0):.1f}% | "
                     f"{row.get('n', 0)} ({row.get('n_text_reliant', 0)}) | {a} | {b} | {_diff_cell(d)} | {sig} |")
    return lines + [""]


def _shares(values: list[str]) -> str:
    if len(values) == 1:
        return f"share {values[0]}"
    return "shares " + ", ".join(values[:-1]) + " and " + values[-1]


def seed_comparison(seed_fig18: dict, main_effects: dict | None, result: dict | None, geocell: str = "0.05",
                    within_10km_index: int = 3, median_index: int = 0) -> list[str]:
    """Sentences placing the synthetic world against the seed's real-data Figure 18 (same geocell).

    `seed_fig18`: {(blur, geocell): [median km, geocell %, <=100 km %, <=10 km %, ...]};
    `main_effects`: the report's paired_blur_effects per geocell; `result`: the sensitivity result.
    """
    a_row, b_row = seed_fig18.get(("unblurred", geocell)), seed_fig18.get(("blurred", geocell))
    if not a_row or not b_row:
        return []
    a10, b10 = a_row[within_10km_index], b_row[within_10km_index]
    seed_diff = b10 - a10
    seed_rel = seed_diff / a10 if a10 else float("nan")
    am, bm = a_row[median_index], b_row[median_index]
    text = (f"Against real photos: in the seed's Figure 18 (real Mapillary images, geocell {geocell}, its validation "
            f"split) blurring moves within 10 km from {a10:.1f}% to {b10:.1f}% ({seed_diff:+.1f} points, "
            f"{100 * seed_rel:+.0f}% of the unblurred share) and the median from {am:.1f} to {bm:.1f} km "
            f"({bm - am:+.1f} km): a small overall effect.")
    parts = [text]
    d = ((main_effects or {}).get(geocell) or {}).get("all", {}).get("within_10km_pct")
    if d and d.get("diff") is not None and d.get("a"):
        rel = d["diff"] / d["a"]
        ratio = abs(d["diff"] / seed_diff) if seed_diff else float("inf")
        inside = d.get("low") is not None and d["low"] <= seed_diff <= d["high"]
        parts.append(f"In this run's synthetic world blurring changes within 10 km by {d['diff']:+.1f} points at geocell {geocell} "
                     f"({100 * rel:+.0f}% of its unblurred share, {d['a']:.1f}% -> {d['b']:.1f}%), "
                     + (f"{ratio:.0f} times the seed's loss in points" if math.isfinite(ratio) else "where the seed lost none")
                     + (": the seed's difference lies inside its interval." if inside
                        else ": the seed's difference lies outside its 95% interval, so this world overstates what "
                             "blurring buys on real photos."))
    rows = (result or {}).get("rows") or []
    if rows:
        inside_rows, outside_rows = [], []
        for row in sorted(rows, key=lambda r: -r["place_text_share"]):
            d = (row.get("all") or {}).get("within_10km_pct") or {}
            if d.get("low") is None or d.get("high") is None:
                continue
            (inside_rows if d["low"] <= seed_diff <= d["high"] else outside_rows).append(f"{row['place_text_share']:g}")
        if inside_rows or outside_rows:
            parts.append("In the sensitivity worlds the seed's difference lies inside the 95% interval at place-text "
                         f"{_shares(inside_rows) if inside_rows else 'none of the shares'}"
                         + (f" and outside it at {_shares(outside_rows)}" if outside_rows else "") + ".")
    return [" ".join(parts), ""]
