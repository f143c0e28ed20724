"""Pulling and cleaning street images: validation rules and the per-tile pull."""
