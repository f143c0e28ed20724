"""Running the graph: materializing a tile, a model partition or the report (execution),
the main job as one Dagster backfill run by the daemon (backfill, daemon, instance), the
`--in-process` variant (in_process), what a run shows and records (progress, stats), and
the text-assumption sensitivity run (sensitivity)."""
