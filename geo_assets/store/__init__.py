"""Where data lives on disk: Parquet tables per partition, image files, the DuckDB catalog."""
