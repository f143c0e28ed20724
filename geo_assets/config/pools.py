"""The Dagster concurrency pool of the steps that use the accelerator.

Captioning, encoding and training share one pool, so a GPU (or the 2 CPU cores a run is
sized for) is never oversubscribed; its limit is the instance's `concurrency.pools`
setting (storage/dagster.yaml, deploy/dagster.yaml). On Kubernetes the same steps carry
`gpu_step_tags()`, which `k8s_job_executor` turns into a pod on the GPU node pool
(docs/DEPLOY.md); other executors ignore that tag.
"""

from __future__ import annotations

from geo_assets.config.k8s import gpu_tags

GPU_POOL = "gpu"


def gpu_step_kwargs() -> dict:
    """`@asset` arguments for a step in the GPU pool: the pool and its Kubernetes op tag."""
    return {"pool": GPU_POOL, "op_tags": gpu_tags()}
