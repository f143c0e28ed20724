"""Per-image preprocessing (seed 3.4.1-3.4.5): OCR, text cleaning, gazetteer, blur, captions.

Pure code, no Dagster: the assets in ``geo_assets.defs`` call into these modules."""
