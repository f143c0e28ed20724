"""A deterministic synthetic UK ("synthetic Mapillary") and a local server speaking
the Mapillary Graph API v4 contract over it, so the whole graph runs offline."""
