"""Data files shipped with the package (see ``places.py``)."""
