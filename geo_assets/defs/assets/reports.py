"""`privacy_report`: what each privacy technique (blurring text, bigger geocells) buys, on
held-out test images with intervals, next to the model-free gazetteer attacker."""

import json

import dagster as dg

from geo_assets.attack.false_guesses import load_measurement
from geo_assets.defs.automation import REPORT_AUTOMATION
from geo_assets.defs.metadata import OWNERS, data_version_of, png_md
from geo_assets.defs.partitions import split_model_partition_key
from geo_assets.defs.resources import StorageResource
from geo_assets.model.report import build_privacy_report, collect_evaluations, no_test_warning, plot_within_distance
from geo_assets.model.sensitivity import RESULT_FILE, read_result
from geo_assets.store.catalog import query_connection
from geo_assets.store.parquet import atomic_write_bytes, read_table


def _attack_rows(layout) -> list[dict]:
    with query_connection(layout) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "gazetteer_attack" not in tables:
            return []
        return con.sql("SELECT image_id, sequence_id, variant, engine, split, text_reliant, error_km "
                       "FROM gazetteer_attack").to_arrow_table().to_pylist()


def _sources(layout) -> list[str]:
    """Where the stored images came from (raw_images' `source`): the header's text assumption."""
    with query_connection(layout) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "raw_images" not in tables:
            return []
        return [r[0] for r in con.execute("SELECT DISTINCT source FROM raw_images WHERE source IS NOT NULL").fetchall()]


def materialize_privacy_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    layout = storage.layout()
    # The model_evaluation partitions Dagster has materialized (its declared input), not a
    # glob of the models folder: a removed geocell's leftover files are not reported.
    keys = context.instance.get_materialized_partitions(dg.AssetKey("model_evaluation"))
    paths = [layout.model_dir(*split_model_partition_key(k)) / "evaluation.json" for k in keys]
    evaluations = collect_evaluations(paths)
    if not evaluations:
        raise dg.Failure("no evaluated models: materialize model_evaluation first")
    predictions = {}
    for e in evaluations:
        path = layout.model_dir(e["blur"], e["geocell"]) / "predictions.parquet"
        if path.exists():
            predictions[(e["blur"], e["geocell"])] = read_table(path).to_pydict()
    try:
        sensitivity = read_result(layout.reports_dir / RESULT_FILE)  # text_assumption_sensitivity's output
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    report = build_privacy_report(evaluations, predictions, _attack_rows(layout), sources=_sources(layout),
                                  sensitivity=sensitivity, false_guesses=load_measurement())
    warning = no_test_warning(evaluations)
    if warning:
        context.log.warning(warning)
        title, _, rest = report["markdown"].partition("\n\n")
        report["markdown"] = f"{title}\n\n{warning}\n\n{rest}"
        report["json"]["warning"] = warning
    out = layout.reports_dir
    atomic_write_bytes(out / "privacy_report.md", report["markdown"].encode())
    atomic_write_bytes(out / "privacy_report.json", json.dumps(report["json"], indent=2, allow_nan=False).encode())
    plot_path = plot_within_distance(predictions, out / "within_distance.png")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(report["markdown"]),
            "models": len(evaluations),
            "within_distance_plot": png_md(plot_path, "% of test images within d km, per model"),
            "plot": dg.MetadataValue.path(str(plot_path)),
            "report_path": dg.MetadataValue.path(str(out / "privacy_report.md")),
        },
        data_version=data_version_of([json.dumps(report["json"], sort_keys=True)]),
    )


@dg.asset(
    deps=[dg.AssetDep("model_evaluation", partition_mapping=dg.AllPartitionMapping()),
          # Its `source` column: which world (and text assumption) the images came from.
          dg.AssetDep("raw_images", partition_mapping=dg.AllPartitionMapping()),
          dg.AssetDep("gazetteer_attack", partition_mapping=dg.AllPartitionMapping()),
          # Opt-in (geo-assets sensitivity): while it was never materialized the report says so.
          dg.AssetDep("text_assumption_sensitivity")],
    code_version="privacy_report-v4",
    group_name="reports",
    kinds={"python", "matplotlib"},
    owners=OWNERS,
    automation_condition=REPORT_AUTOMATION,
)
def privacy_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Figure 18 on the test split with 95% intervals for every model, the seed's random-split
    protocol beside it, blurred-minus-unblurred paired differences with words on significance,
    the synthetic world's text assumption (place-text share) with its sensitivity table, and the
    gazetteer attacker per OCR engine. Writes storage/reports/privacy_report.{md,json}
    and within_distance.png."""
    return materialize_privacy_report(context, storage)
