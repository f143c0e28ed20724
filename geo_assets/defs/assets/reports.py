"""`privacy_report`: the seed's Figure 18 over every trained partition, and what each
privacy technique (blur, bigger geocells) buys."""

import json

import dagster as dg

from geo_assets.defs.automation import REPORT_AUTOMATION
from geo_assets.defs.metadata import data_version_of
from geo_assets.defs.resources import StorageResource
from geo_assets.model.report import build_privacy_report, collect_evaluations, plot_within_distance
from geo_assets.store.parquet import atomic_write_bytes


@dg.asset(
    deps=[dg.AssetDep("model_evaluation", partition_mapping=dg.AllPartitionMapping())],
    code_version="privacy_report-v1",
    group_name="reports",
    kinds={"python", "matplotlib"},
    automation_condition=REPORT_AUTOMATION,
)
def privacy_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    layout = storage.layout()
    evaluations = collect_evaluations(layout.models_root)
    if not evaluations:
        raise dg.Failure("no evaluated models under models/: materialize model_evaluation first")
    report = build_privacy_report(evaluations)
    out = layout.reports_dir
    atomic_write_bytes(out / "privacy_report.md", report["markdown"].encode())
    atomic_write_bytes(out / "privacy_report.json", json.dumps(report["json"], indent=2).encode())
    plot_path = plot_within_distance(evaluations, out / "within_distance.png")
    return dg.MaterializeResult(
        metadata={
            "figure_18": dg.MetadataValue.md(report["markdown"]),
            "models": len(evaluations),
            "plot": dg.MetadataValue.path(str(plot_path)),
            "report": dg.MetadataValue.path(str(out / "privacy_report.md")),
        },
        data_version=data_version_of(json.dumps(e["metrics"], sort_keys=True) for e in evaluations),
    )
