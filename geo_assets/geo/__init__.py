"""Pure geographic maths: bounding boxes, tiles, geocells, distances."""
