"""Where data lives, in layers (each imports only those below it):

- names.py: the one check on names that become path components;
- backends/: bytes in and out of a local folder or s3:// (atomic publish, listing, locks,
  DuckDB access); the only code that asks which kind of storage a path is;
- layout.py: where every table, image, cache and model folder lives under its root;
- parquet.py (tables), images.py, locks.py (per-partition locks), reads.py (a recorder of
  what is read);
- catalog.py: DuckDB views over the tables.
"""
