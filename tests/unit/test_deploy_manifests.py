"""deploy/ for operators, checked offline (this machine has no Docker engine
and no Kubernetes cluster: nothing here is run, only validated).

- Kubernetes manifests: every built-in kind against the Kubernetes 1.30
  OpenAPI schemas bundled in `kubernetes-validate` (strict: an unknown field
  is an error). CloudNativePG's `Cluster` has no bundled schema, so it is
  checked structurally, against the fields used here.
- The compose file: against the Compose Specification schema vendored in
  `check-jsonschema`, then structurally (services, volumes, files it mounts).
- The Dockerfiles: structurally (non-root user, health check, ports, every
  file copied exists).
- The cross-references: the probes' port is the health listener's, the
  Secrets' keys are the files and variables the switch reads, Prometheus
  scrapes the switches' metrics port.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from switch import limits
from switch.pki import TlsPaths
from switch.server import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"  # grpc probes are GA since 1.27


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d]
    return docs


def k8s(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in k8s_documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# ----------------------------------------------------------------- Kubernetes


def test_built_in_kinds_pass_the_kubernetes_schemas_strictly() -> None:
    built_in = [d for d in k8s_documents() if "cnpg.io" not in d["apiVersion"]]
    assert {d["kind"] for d in built_in} >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Secret",
    }
    for doc in built_in:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    """The schemas are really applied (a misspelled probe would not pass)."""
    bad = copy.deepcopy(k8s("Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_probes_are_native_grpc_on_the_plaintext_health_listener() -> None:
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    health_port = int(env["MEDSWITCH_HEALTH_LISTEN"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == health_port
    assert ports["grpc"] == int(env["MEDSWITCH_LISTEN"].rsplit(":", 1)[1])
    assert ports["metrics"] == int(env["MEDSWITCH_METRICS_LISTEN"].rsplit(":", 1)[1])
    ready = container["readinessProbe"]["grpc"]
    assert ready["port"] == health_port and ready.get("service", "") == ""
    for probe in ("livenessProbe", "startupProbe"):
        # the database's state must not restart the switch: liveness asks for the process only
        assert container[probe]["grpc"] == {"port": health_port, "service": LIVENESS_SERVICE}
    assert pod["terminationGracePeriodSeconds"] > limits.drain_grace_s
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0


def test_secrets_hold_what_the_switch_reads() -> None:
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    tls_volume = next(v for v in pod["volumes"] if v["name"] == "tls")
    tls_secret = k8s("Secret", tls_volume["secret"]["secretName"])
    paths = TlsPaths(Path(env["MEDSWITCH_TLS_DIR"]))
    wanted = {paths.ca_crt.name, paths.server_crt.name, paths.server_key.name}
    assert set(tls_secret["stringData"]) == wanted
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
    assert mount["mountPath"] == env["MEDSWITCH_TLS_DIR"] and mount["readOnly"]
    key_ref = env["MEDSWITCH_DATA_KEY"]["secretKeyRef"]
    assert key_ref["key"] in k8s("Secret", key_ref["name"])["stringData"]
    # the database URL is the Secret CloudNativePG writes for the cluster's owner
    url_ref = env["MEDSWITCH_DATABASE_URL"]["secretKeyRef"]
    cluster = k8s("Cluster")
    assert url_ref == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}


def test_service_and_disruption_budget_select_the_switch_pods() -> None:
    deployment = k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2
    budget = k8s("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    service = k8s("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


# CloudNativePG's Cluster: no schema is bundled for it, so the fields used here
# are checked by hand against the operator's API (postgresql.cnpg.io/v1).
CNPG_SPEC_FIELDS = {
    "instances",
    "imageName",
    "primaryUpdateStrategy",
    "minSyncReplicas",
    "maxSyncReplicas",
    "postgresql",
    "bootstrap",
    "storage",
    "affinity",
    "monitoring",
}


def test_the_database_cluster_is_synchronous_postgresql_15_or_newer() -> None:
    cluster = k8s("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # said plainly in the docstring
        kubernetes_validate.validate(cluster, K8S_VERSION, strict=True)
    spec = cluster["spec"]
    assert set(spec) <= CNPG_SPEC_FIELDS, set(spec) - CNPG_SPEC_FIELDS
    assert spec["instances"] >= 2
    assert 1 <= spec["minSyncReplicas"] <= spec["maxSyncReplicas"] < spec["instances"]
    tag = re.fullmatch(r".*:(\d+)(\.\d+)*", spec["imageName"])
    assert tag is not None and int(tag.group(1)) >= 15
    initdb = spec["bootstrap"]["initdb"]
    assert initdb["database"] == "medswitch" and initdb["owner"] == "medswitch"
    assert "ALTER ROLE medswitch CREATEROLE" in initdb["postInitApplicationSQL"]
    for name in ("fsync", "synchronous_commit", "full_page_writes"):  # MedSwitch needs them on
        assert spec["postgresql"]["parameters"].get(name, "on") == "on"
    assert all(isinstance(v, str) for v in spec["postgresql"]["parameters"].values())


# -------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8"))
    return loaded


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    loaded: dict[str, Any] = json.loads(vendored.joinpath("compose-spec.json").read_text("utf-8"))
    return loaded


def test_compose_file_passes_the_compose_specification_schema() -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    bad = compose()
    bad["services"]["switch-1"]["restart_policy"] = "always"  # not a service field
    assert not validator.is_valid(bad)


def test_compose_runs_two_switches_on_the_patroni_cluster_with_prometheus() -> None:
    services = compose()["services"]
    switches = [n for n in services if n.startswith("switch-")]
    assert len(switches) == 2
    for name in switches:
        env = services[name]["environment"]
        url = env["MEDSWITCH_DATABASE_URL"]
        assert "@pg1:5432,pg2:5432/" in url and url.endswith("target_session_attrs=read-write")
        assert "MEDSWITCH_DATA_KEY" in env and services[name]["read_only"]
    for node in ("pg1", "pg2"):
        env = services[node]["environment"]
        assert env["PATRONI_NAME"] == node
        assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{node}:5432"
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text("utf-8"))
    (job,) = prometheus["scrape_configs"]
    targets = job["static_configs"][0]["targets"]
    metrics_port = dockerfile_env(DEPLOY / "Dockerfile")["MEDSWITCH_METRICS_LISTEN"].split(":")[1]
    assert sorted(targets) == sorted(f"{n}:{metrics_port}" for n in switches)


def test_compose_names_only_what_exists() -> None:
    spec = compose()
    services = spec["services"]
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown {needed}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                # ./tls is made by the operator (medswitch pki init); the rest ships
                assert source == "./tls" or (DEPLOY / source).exists(), source
            else:
                assert source in spec["volumes"], f"{name}: volume {source} undeclared"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name


# ---------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text("utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions(path):
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = dockerfile_instructions(path)
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize(
    ("dockerfile", "context"),
    [(DEPLOY / "Dockerfile", ROOT), (DEPLOY / "ha" / "Dockerfile", DEPLOY / "ha")],
    ids=["switch", "patroni"],
)
def test_dockerfiles_copy_only_files_that_exist(dockerfile: Path, context: Path) -> None:
    for instruction, args in dockerfile_instructions(dockerfile):
        if instruction == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (context / source).exists(), f"{dockerfile.name}: COPY {source}"


def test_switch_image_is_slim_non_root_and_health_checked() -> None:
    stage = final_stage(DEPLOY / "Dockerfile")
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [args for instruction, args in stage if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (check,) = [args for instruction, args in stage if instruction == "HEALTHCHECK"]
    assert '"switch.healthcheck"' in check
    env = dockerfile_env(DEPLOY / "Dockerfile")
    exposed = {int(p) for i, args in stage if i == "EXPOSE" for p in args.split()}
    listens = ("MEDSWITCH_LISTEN", "MEDSWITCH_METRICS_LISTEN", "MEDSWITCH_HEALTH_LISTEN")
    assert exposed == {int(env[name].rsplit(":", 1)[1]) for name in listens}
    settings = (ROOT / "switch" / "config.py").read_text("utf-8")
    assert all(f'"{name}"' in settings for name in env if name.startswith("MEDSWITCH_"))


def test_patroni_nodes_share_one_synchronous_configuration() -> None:
    config = yaml.safe_load((DEPLOY / "ha" / "patroni.yml").read_text("utf-8"))
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]  # Patroni's rule
    for name in ("fsync", "synchronous_commit", "full_page_writes"):
        assert dcs["postgresql"]["parameters"][name] == "on"
    copies = dict(
        reversed(args.split())
        for instruction, args in dockerfile_instructions(DEPLOY / "ha" / "Dockerfile")
        if instruction == "COPY"
    )
    assert copies[config["bootstrap"]["post_bootstrap"]] == "post_bootstrap.sh"


def test_the_local_cluster_gives_each_node_its_own_addresses_over_the_shared_settings(
    tmp_path: Path,
) -> None:
    spec = importlib.util.spec_from_file_location("ha_cluster", DEPLOY / "ha" / "cluster.py")
    assert spec is not None and spec.loader is not None
    ha = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ha)
    cluster = ha.Cluster(tmp_path, 40000)
    shared = yaml.safe_load((DEPLOY / "ha" / "patroni.yml").read_text("utf-8"))
    one, two = (cluster.patroni_config(name) for name in ha.NODES)
    assert one["bootstrap"]["dcs"] == shared["bootstrap"]["dcs"]  # synchronous_mode and all
    assert one["bootstrap"]["post_bootstrap"] == str(tmp_path.resolve() / "post_bootstrap.sh")
    assert one["postgresql"]["listen"] == "127.0.0.1:40002"
    assert two["postgresql"]["listen"] == "127.0.0.1:40003"
    assert one["restapi"]["listen"] != two["restapi"]["listen"]
    assert one["etcd3"] == two["etcd3"] == {"hosts": "127.0.0.1:40000"}
    assert one["postgresql"]["data_dir"] != two["postgresql"]["data_dir"]
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0  # passwords: owner only
    url = cluster.url()
    assert "@127.0.0.1:40002,127.0.0.1:40003/medswitch?" in url
    assert url.endswith("target_session_attrs=read-write")
