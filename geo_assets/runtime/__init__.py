"""How models execute on this machine: OpenVINO on CPU and the per-run thread budget."""
