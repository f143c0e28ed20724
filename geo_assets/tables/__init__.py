"""Table logic that needs no Dagster and no storage: pure Arrow in, Arrow out."""
