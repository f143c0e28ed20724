"""The scaled set-up's configuration (deploy/): validated by Dagster's and dagster-k8s's own schemas,
so a typo fails here rather than on the cluster. (The instance on a real PostgreSQL: test_services.py.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTANCE_YAML = DEPLOY / "dagster.yaml"
HELM_VALUES = [DEPLOY / "helm" / "values.yaml", DEPLOY / "helm" / "values-shared-volume.yaml"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _load_instance_dict(text: str, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(text)
    config, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    return config


def test_instance_yaml_validates_with_dagster_schema(tmp_path):
    config = _load_instance_dict(INSTANCE_YAML.read_text(), tmp_path)
    db = config["storage"]["postgres"]["postgres_db"]
    # Every connection setting, the password above all, is an environment reference.
    assert db == {"hostname": {"env": "DAGSTER_PG_HOST"}, "port": {"env": "DAGSTER_PG_PORT"},
                  "username": {"env": "DAGSTER_PG_USERNAME"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
                  "db_name": {"env": "DAGSTER_PG_DB"}, "scheme": "postgresql+psycopg2"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    runs = config["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] >= 1
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in \
        runs["tag_concurrency_limits"]
    assert config["concurrency"]["pools"]["default_limit"] == 1  # the gpu pool: one step at a time


@pytest.mark.parametrize("broken, wrong", [
    ("max_concurrent_runs: 16", "max_concurent_runs: 16"),  # misspelt key
    ("password: {env: DAGSTER_PG_PASSWORD}", "pasword: {env: DAGSTER_PG_PASSWORD}"),
    ("limit: 1", "limit: one"),  # wrong type
    # The limits under run_coordinator as well as `concurrency:`: Dagster refuses the mix.
    ("  class: QueuedRunCoordinator",
     "  class: QueuedRunCoordinator\n  config:\n    max_concurrent_runs: 4"),
])
def test_instance_yaml_typos_fail(tmp_path, broken, wrong):
    text = INSTANCE_YAML.read_text()
    assert broken in text
    with pytest.raises(DagsterInvalidConfigError):
        _load_instance_dict(text.replace(broken, wrong, 1), tmp_path)


def test_local_default_stays_sqlite(tmp_path):
    config = _load_instance_dict((ROOT / "storage" / "dagster.yaml").read_text(), tmp_path)
    assert "storage" not in config and "run_storage" not in config  # SQLite under DAGSTER_HOME
    from dagster import DagsterInstance

    # The queue's settings from both blocks reach the instance's run coordinator.
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        coordinator = instance.run_coordinator
        assert coordinator.dequeue_interval_seconds == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1


def _helm(path: Path) -> dict:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict)
    return values


# Key names of dagster/dagster chart 1.13.x (its values schema, helm/dagster/schema/ in the Dagster
# repository) for the sections these values use. `helm lint` with the chart is the full check
# (docs/DEPLOY.md); this catches a misspelt key without network access.
CHART_TOP = {"global", "telemetry", "generatePostgresqlPasswordSecret", "postgresql", "dagsterWebserver",
             "dagster-user-deployments", "runLauncher", "dagsterDaemon", "concurrency", "computeLogManager",
             "ingress", "imagePullSecrets", "serviceAccount", "pythonLogs", "retention", "scheduler", "busybox",
             "migrate", "rabbitmq", "redis", "flower", "generateCeleryConfigSecret", "additionalInstanceConfig"}
CHART_K8S_LAUNCHER = {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                      "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                      "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"}
CHART_RUN_K8S_CONFIG = {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"}
CHART_USER_DEPLOYMENT = {"name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                         "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
                         "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
                         "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName"}
CHART_POSTGRESQL = {"postgresqlScheme", "image", "enabled", "postgresqlHost", "postgresqlUsername",
                    "postgresqlPassword", "postgresqlDatabase", "postgresqlParams", "service"}
CHART_CONCURRENCY = {"enabled": None, "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
                     "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"}}


@pytest.mark.parametrize("path", HELM_VALUES, ids=lambda p: p.name)
def test_helm_values_use_chart_keys_and_no_secrets(path):
    values = _helm(path)
    assert set(values) <= CHART_TOP, set(values) - CHART_TOP
    for dep in values.get("dagster-user-deployments", {}).get("deployments", []):
        assert set(dep) <= CHART_USER_DEPLOYMENT, set(dep) - CHART_USER_DEPLOYMENT
        # Secrets by reference only.
        assert all(set(s) == {"name"} for s in dep.get("envSecrets", []))
        assert not {k for k in dep.get("env", {}) if re.search(r"SECRET|PASSWORD|TOKEN|KEY_ID", k)}
    launcher = values.get("runLauncher", {}).get("config", {}).get("k8sRunLauncher", {})
    assert set(launcher) <= CHART_K8S_LAUNCHER, set(launcher) - CHART_K8S_LAUNCHER
    assert set(launcher.get("runK8sConfig", {})) <= CHART_RUN_K8S_CONFIG
    assert set(values.get("postgresql", {})) <= CHART_POSTGRESQL
    if "postgresql" in values:
        assert values["postgresql"].get("postgresqlPassword", "") == ""  # from global.postgresqlSecretName
        assert values["generatePostgresqlPasswordSecret"] is False
    for section, keys in CHART_CONCURRENCY.items():
        if keys is not None:
            assert set(values.get("concurrency", {}).get(section, {})) <= keys


def _instance_from_helm(values: dict) -> dict:
    """The instance sections the chart renders from these values (configmap-instance.yaml),
    in dagster.yaml form."""
    conc = values["concurrency"]
    assert conc["enabled"] is True
    pools = {_snake(k): v for k, v in conc["pools"].items()}
    runs = {_snake(k): v for k, v in conc["runs"].items()}
    return {"concurrency": {"pools": pools, "runs": runs}}


def test_helm_limits_equal_instance_yaml(tmp_path):
    values = _helm(HELM_VALUES[0])
    instance = yaml.safe_load(INSTANCE_YAML.read_text())
    assert _instance_from_helm(values)["concurrency"] == instance["concurrency"]
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator" and coordinator["enabled"]
    # The chart, like Dagster, refuses limits in both the run coordinator and `concurrency`.
    assert not (coordinator["config"]["queuedRunCoordinator"] or {})
    # What the chart renders from them passes Dagster's schema.
    rendered = {**_instance_from_helm(values),
                "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    config = _load_instance_dict(yaml.safe_dump(rendered), tmp_path)
    assert config["concurrency"]["runs"]["tag_concurrency_limits"][0]["key"] == "dagster/partition"


def test_helm_run_launcher_config_passes_dagster_k8s_schema():
    from dagster._config import validate_config
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    from geo_assets.config.k8s import TILE_K8S_CONFIG

    values = _helm(HELM_VALUES[0])
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = {_snake(k): v for k, v in launcher["runK8sConfig"].items()}
    assert run_k8s == TILE_K8S_CONFIG  # one definition of a tile run's size
    UserDefinedDagsterK8sConfig.from_dict(run_k8s)
    # The launcher config as the chart renders it (values + the chart's own fields).
    rendered = {
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": "geo-assets-dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "image_pull_policy": launcher["imagePullPolicy"],
        "load_incluster_config": launcher["loadInclusterConfig"],
        "env_config_maps": launcher["envConfigMaps"],
        "env_secrets": launcher["envSecrets"],
        "env_vars": launcher["envVars"],
        "volume_mounts": launcher["volumeMounts"],
        "volumes": launcher["volumes"],
        "fail_pod_on_run_failure": launcher["failPodOnRunFailure"],
        "run_k8s_config": run_k8s,
    }
    result = validate_config(K8sRunLauncher.config_type(), rendered)
    assert result.success, result.errors
    bad = validate_config(K8sRunLauncher.config_type(), {**rendered, "run_k8s_confg": run_k8s})
    assert not bad.success


def test_gpu_tags_put_the_pod_on_a_gpu_node():
    """geo_assets.config.k8s.gpu_tags(), applied by dagster-k8s the way the launcher does, gives a pod on the
    GPU node pool with one GPU, in the CUDA image."""
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    from geo_assets.config.k8s import GPU_NODE_LABEL, K8S_CONFIG_TAG, gpu_tags

    tags = gpu_tags("registry.example.com/geo-assets-cuda:0.1.0")
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.example.com/geo-assets:0.1.0", dagster_home="/opt/dagster/dagster_home"),
        args=["dagster", "api", "execute_run", "{}"], job_name="dagster-run-test",
        user_defined_k8s_config=UserDefinedDagsterK8sConfig.from_dict(tags[K8S_CONFIG_TAG]),
    )
    pod = job.spec.template.spec
    container = pod.containers[0]
    assert container.image == "registry.example.com/geo-assets-cuda:0.1.0"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.node_selector == GPU_NODE_LABEL
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.tolerations)


def test_dockerfiles_pin_and_hold_no_secrets():
    cpu = (DEPLOY / "Dockerfile").read_text()
    cuda = (DEPLOY / "Dockerfile.cuda").read_text()
    for text in (cpu, cuda):  # issue 22: the base image by digest, every package from constraints.txt
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}$", text, re.M)
        assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, re.M) and len(re.findall(r"^FROM ", text, re.M)) == 1
        assert "COPY pyproject.toml constraints.txt ./" in text and "RUN pip install -c constraints.txt -e ." in text
    assert "torch==2.14.1" in cuda and "ARG TORCH_CUDA=cu" in cuda
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in cuda and "download.pytorch.org/whl/cpu" in cpu
    for text in (cpu, cuda):
        assert "dagster-postgres==0.29.27" in text and "dagster-k8s==0.29.27" in text
        assert not re.search(r"(?i)(AWS_SECRET_ACCESS_KEY|PASSWORD|TOKEN)\s*=", text)


def _pod_security(pod: dict, container: dict, *, read_only: bool) -> None:
    assert pod.get("runAsNonRoot") is True and pod.get("runAsUser") == 10001
    assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}
    assert container.get("allowPrivilegeEscalation") is False and container.get("privileged") is False
    assert container.get("capabilities") == {"drop": ["ALL"]}
    assert container.get("readOnlyRootFilesystem", False) is read_only


def test_helm_pods_run_unprivileged_and_the_code_server_is_fenced():
    """Issue 22 (low): every pod non-root, no escalation, no capabilities; the code server and
    run pods read-only with emptyDir /tmp and model cache; a NetworkPolicy lets only the
    webserver and the daemon reach the code server."""
    values = _helm(HELM_VALUES[0])
    for section in ("dagsterWebserver", "dagsterDaemon"):
        _pod_security(values[section]["podSecurityContext"], values[section]["securityContext"], read_only=False)
    (dep,) = values["dagster-user-deployments"]["deployments"]
    _pod_security(dep["podSecurityContext"], dep["securityContext"], read_only=True)
    mounts = {m["mountPath"] for m in dep["volumeMounts"]}
    assert {"/tmp", dep["env"]["GEO_ASSETS_CACHE_DIR"]} <= mounts
    run = values["runLauncher"]["config"]["k8sRunLauncher"]
    _pod_security({_camel(k): v for k, v in run["runK8sConfig"]["podSpecConfig"]["security_context"].items()},
                  run["runK8sConfig"]["containerConfig"]["security_context"], read_only=True)
    assert {m["mountPath"] for m in run["volumeMounts"]} == mounts

    policy = yaml.safe_load((DEPLOY / "k8s" / "networkpolicy.yaml").read_text())
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"component": "user-deployments", "deployment": dep["name"]}
    (rule,) = policy["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"]["component"] for p in rule["from"]] == ["dagster-webserver", "dagster-daemon"]
    assert rule["ports"] == [{"protocol": "TCP", "port": dep["port"]}]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def test_deploy_doc_creates_secrets_from_files():
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    commands = [line for line in doc.splitlines() if line.strip().startswith("--from-") or "create secret" in line]
    assert commands and not any("--from-literal" in line for line in commands)
    assert sum("--from-file=" in line for line in commands) >= 5
