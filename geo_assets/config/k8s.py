"""Where geo_assets runs and steps land on Kubernetes (the `dagster-k8s/config` tag).

Plain dicts, so importing this needs no dagster-k8s; geo_assets_tests/test_deploy.py checks
them against dagster-k8s's own schema. Used with deploy/helm/values.yaml (docs/DEPLOY.md):

- `GPU_K8S_CONFIG` as a run tag on a job of GPU assets (K8sRunLauncher: the whole run's pod
  goes to a GPU node), or as an op tag on the `gpu`-pool assets under `k8s_job_executor`
  (each GPU step becomes its own pod there; the rest stay on CPU nodes);
- `TILE_K8S_CONFIG`: what one tile run needs (PERFORMANCE.md: ~1 s of CPU per image, two
  busy threads, up to ~1 GiB of models); the Helm values give every run this by default.
"""

from __future__ import annotations

import os

K8S_CONFIG_TAG = "dagster-k8s/config"

# Label and taint of the GPU node pool (set them when creating the pool; docs/DEPLOY.md).
GPU_NODE_LABEL = {"geo-assets/pool": "gpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

# Every run pod: the images' uid, no escalation, no capabilities, a read-only root filesystem
# (the run writes /tmp and GEO_ASSETS_CACHE_DIR, emptyDir volumes in deploy/helm/values.yaml).
RUN_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                          "capabilities": {"drop": ["ALL"]}}
RUN_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"}}

TILE_K8S_CONFIG = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "2", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},  # OCR/blur threads beyond 2 only contend
        },
        "security_context": RUN_CONTAINER_SECURITY,
    },
    "pod_spec_config": {"security_context": RUN_POD_SECURITY},
}


def gpu_k8s_config(image: str | None = None) -> dict:
    """One GPU, on the GPU node pool, in the CUDA image (`GEO_ASSETS_GPU_IMAGE`, else the run's image)."""
    image = image or os.environ.get("GEO_ASSETS_GPU_IMAGE") or None
    container = {
        "resources": {
            "requests": {"cpu": "4", "memory": "16Gi"},
            # Kubernetes schedules GPUs by limit only; BLIP-2 in fp16 needs ~8 GiB of host memory to load.
            "limits": {"nvidia.com/gpu": "1", "memory": "24Gi"},
        },
    }
    if image:
        container["image"] = image  # dagster-k8s lets container_config's image replace the run's image
    return {
        "container_config": container,
        "pod_spec_config": {"node_selector": dict(GPU_NODE_LABEL), "tolerations": [dict(t) for t in GPU_TOLERATIONS]},
    }


def gpu_tags(image: str | None = None) -> dict:
    """Tags for a job or asset whose work needs the GPU node pool."""
    return {K8S_CONFIG_TAG: gpu_k8s_config(image)}
