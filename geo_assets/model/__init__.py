"""The geolocator: MLP, loss, training loop, metrics, artifacts, prediction (seed 3.5-3.7)."""
