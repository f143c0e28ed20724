"""Geotagged photos from a local folder: the third image source (EXIF, sidecars, sequences, scan)."""
