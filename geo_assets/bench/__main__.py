"""`python -m geo_assets.bench [options]`: the same as `geo-assets bench`."""

import sys

from geo_assets.bench.cli import main

sys.exit(main())
