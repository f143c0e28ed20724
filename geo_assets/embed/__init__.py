"""Frozen encoders (text, image) and their frozen fusion (seed 3.4.2-3.4.4)."""
