"""Plain-text tables for the bench report (Markdown pipe tables)."""

from __future__ import annotations

from geo_assets.bench.incremental import TILE_ASSET_NAMES


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or ("l" + "r" * (len(headers) - 1))

    def line(values):
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def stage_table(stages: list[dict]) -> str:
    def secs(v: float) -> str:
        return f"{v:.4f}" if v < 1 else f"{v:.2f}"

    return format_table(
        ["stage", "images", "seconds", "images/s", "peak MiB", "notes"],
        [[s["stage"], s["images"], secs(s["seconds"]), f"{s['images_per_s']:.2f}", f"{s['peak_mib']:.0f}", s["note"]]
         for s in stages],
        "lrrrrl",
    )


def incremental_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        a = r["a_full"]["seconds"]
        for key, label in (("a_full", "(a) full build"), ("b_no_new", "(b) rebuild, nothing new"),
                           ("b_pull_only", "(b') daily pull only, nothing new"),
                           ("c_new", "(c) rebuild, new images"), ("d_recompute", "(d) recompute all (seed)")):
            x = r[key]
            steps = x["steps"]
            per = " / ".join(f"{steps.get(k, 0):.1f}" for k in TILE_ASSET_NAMES)
            rows.append([r["images_per_tile"], label, x["new_images"], x["total_images"], f"{x['seconds']:.2f}",
                         f"{x['seconds'] / a:.3f}", f"{x['peak_mib']:.0f}", per])
    return format_table(["images/tile", "run", "new", "total", "seconds", "ratio to (a)", "peak MiB",
                         "raw / ocr / blur / captions / embeddings s"], rows, "rlrrrrrl")


def growth_table(rows: list[dict]) -> str:
    return format_table(
        ["sizes", "total images", "new images", "(a) full", "(b) no new", "(c) new", "(c)-(b)", "(d) recompute"],
        [[f"{g['from']} -> {g['to']}", g["total_images"], g["new_images"], g["a_full"], g["b_no_new"], g["c_new"],
          g["c_minus_b"] if g["c_minus_b"] is not None else "n/a", g["d_recompute"]] for g in rows],
        "lrrrrrrr",
    )



def per_image_table(result: dict) -> str:
    return format_table(
        ["stage", "previous s/image", "current s/image", "ratio (previous / current)", "ratio per round"],
        [[r["stage"], f"{r['previous_s_per_image']:.3f}", f"{r['current_s_per_image']:.3f}",
          "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}", ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])]
         for r in result["stages"]],
        "lrrrl",
    )


def encoder_table(result: dict) -> str:
    return format_table(
        ["encoder", "items", "current per s", "previous per s", "ratio"],
        [[r["encoder"], r["items"], f"{r['per_second']:.1f}",
          "-" if r["previous_per_second"] is None else f"{r['previous_per_second']:.1f}",
          "-" if not r["previous_per_second"] else f"{r['per_second'] / r['previous_per_second']:.2f}"]
         for r in result.get("encoders", [])],
        "lrrrr",
    )


def blur_quality_table(result: dict) -> str:
    rows = []
    for path, q in result["quality"].items():
        rows.append([path, q["text_boxes"], f"{100 * q['covered_80pct_share']:.1f}%", f"{100 * q['blurred_area_share']:.2f}%",
                     q["rapidocr_true_words_after"], f"{q['easyocr_true_words_after']} (on {q['easyocr_images']})",
                     f"{q['reread_vs_full_read_raw_words_differ']} / {q['reread_vs_full_read_cleaned_text_differs']}"])
    return format_table(["path", "text boxes", ">= 80% blurred", "image area blurred", "RapidOCR true words after (full read)",
                         "EasyOCR true words after", "images where re-read != full read: raw / cleaned"], rows, "lrrrrrr")
