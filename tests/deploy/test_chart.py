"""The Helm chart: every ci/ values file renders, lints and validates, with the properties
the plants rely on (pod security, probes, secrets by reference, one scheduler, migration
hook, PDBs, NetworkPolicy, monitoring behind flags, the three Redis topologies)."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import jsonschema  # type: ignore[import-untyped]  # comes with kubernetes-validate, no hints
import kubernetes_validate  # type: ignore[import-untyped]  # the package ships no type hints
import pytest
import yaml

from core.config import parse_config
from repsys.cli import build_parser
from tests.deploy.chart import (
    BASE,
    CHART,
    CI_FILES,
    NAMESPACE,
    RELEASE,
    ci_values,
    config_file,
    helm_error,
    merge,
    named,
    of_kind,
    pod_specs,
    render,
    render_ci,
    render_files,
)
from tests.deploy.crd_schemas import CRD_SCHEMAS

CI_NAMES = [p.name.removesuffix("-values.yaml") for p in CI_FILES]
COMPONENTS = [
    "collector",
    "history",
    "notify",
    "plex-sender",
    "rules",
    "runner",
    "scheduler",
    "web",
]
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest known.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
SCHEMA_REFUSAL = "values don't meet the specifications of the schema(s) in the following chart(s):"


def test_ci_files_cover_every_variant() -> None:
    assert set(CI_NAMES) >= {"standalone", "sentinel", "cluster", "full", "minimal"}


# --- render, lint, validate ---------------------------------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_ci_values_lint_clean_in_strict_mode(name: str) -> None:
    report = helm.lint(CHART, ci_values(name), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; the only info left is Helm's "icon is recommended".
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_without_values_names_the_required_database_url() -> None:
    report = helm.lint(CHART, {}, strict=True)
    assert report["errors"], "the chart must refuse to install without a database URL"
    assert all("/database/url" in e for e in report["errors"])


@pytest.mark.parametrize("name", CI_NAMES)
def test_every_manifest_validates_against_kubernetes_schemas(name: str) -> None:
    docs = render_ci(name)
    assert len(docs) >= 4
    for doc in docs:
        if doc["kind"] in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
            continue
        for version in KUBE_VERSIONS:
            # strict: unknown fields are errors, as the API server's field validation.
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_broken_manifest_does_fail_validation() -> None:
    """The validator is strict: the same Deployment with a misspelt field is refused."""
    deployment = named(render_ci("standalone"), "Deployment", f"{RELEASE}-repsys-rules")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", CI_NAMES)
def test_objects_have_unique_names_and_release_labels(name: str) -> None:
    docs = render_ci(name)
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys))
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "repsys"


# --- pods: security, probes, config ------------------------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_pods_run_non_root_on_a_read_only_root_filesystem(name: str) -> None:
    specs = pod_specs(render_ci(name))
    assert specs
    for obj, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, obj
        assert spec["securityContext"]["runAsUser"] != 0, obj
        assert spec["automountServiceAccountToken"] is False, obj
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, obj
            assert sc["allowPrivilegeEscalation"] is False, obj
            assert sc["privileged"] is False, obj
            assert sc["capabilities"]["drop"] == ["ALL"], obj
            # The only writable places are the mounted emptyDirs (or the runner's claim).
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert set(mounts) == {"/etc/repsys", "/tmp", "/app/var"}, obj
            assert mounts["/etc/repsys"]["readOnly"] is True


@pytest.mark.parametrize("name", CI_NAMES)
def test_every_process_is_probed_on_healthz_and_readyz(name: str) -> None:
    docs = render_ci(name)
    deployments = of_kind(docs, "Deployment")
    assert deployments
    for dep in deployments:
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == 9100
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["resources"]["requests"]["memory"]
    cfg = config_file(docs)
    # The processes serve the probes on every interface of the pod, on the probed port.
    assert cfg["http"] == {"host": "0.0.0.0", "port": 9100}


def test_every_component_gets_a_deployment_running_its_command() -> None:
    docs = render_ci("standalone")
    for component in COMPONENTS:
        dep = named(docs, "Deployment", f"{RELEASE}-repsys-{component}")
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "repsys:0.1.0"
        assert container["args"][:2] == ["--config", "/etc/repsys/repsys.yaml"]
        assert container["args"][2:] == [component]
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert volumes["config"]["configMap"]["name"] == f"{RELEASE}-repsys-config"


def test_every_container_runs_a_real_repsys_command() -> None:
    """The args parse with the real ``repsys`` parser, as the long-running process."""
    parser = build_parser()
    docs = render_ci("full")
    for dep in of_kind(docs, "Deployment"):
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        args = parser.parse_args(container["args"])
        assert args.config == "/etc/repsys/repsys.yaml"
        assert args.command == component
        # Not a one-shot mode: these run until SIGTERM.
        for one_shot in ("once", "burst", "fire", "list"):
            assert not getattr(args, one_shot, None), f"{component}: --{one_shot}"
        assert getattr(args, "mode", "run") == "run"
    job = named(docs, "Job", f"{RELEASE}-repsys-migrate")
    args = parser.parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert (args.command, args.db_command, args.revision) == ("db", "upgrade", "head")


def test_disabled_components_render_nothing() -> None:
    docs = render_ci("minimal")
    names = {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "Service")}
    assert names == {f"{RELEASE}-repsys-collector", f"{RELEASE}-repsys-rules"}
    assert of_kind(docs, "Job") == []
    assert of_kind(docs, "NetworkPolicy") == []
    assert of_kind(docs, "Ingress") == []
    assert of_kind(docs, "ServiceAccount") == []


def test_config_change_rolls_the_pods() -> None:
    """The pods carry the config's checksum, so `helm upgrade` with new config restarts them."""

    def checksum(values: dict[str, Any]) -> str:
        dep = named(render(values), "Deployment", f"{RELEASE}-repsys-rules")
        return str(dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    same = checksum(BASE)
    assert checksum(BASE) == same
    assert checksum(merge(BASE, {"config": {"streams": {"partitions": 32}}})) != same


@pytest.mark.parametrize("name", CI_NAMES)
def test_the_config_file_is_a_valid_repsys_config(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RepSys's own loader accepts what the chart writes (unknown keys would be refused)."""
    docs = render_ci(name)
    env_names = _secret_env_names(docs)
    for env in env_names:
        monkeypatch.setenv(env, f"value-of-{env}")
    cfg = parse_config(config_file(docs), file=f"ci/{name}-values.yaml")
    assert cfg.http.host == "0.0.0.0"
    assert cfg.web.host == "0.0.0.0"
    assert cfg.web.port == 8080
    assert cfg.database.url == ci_values(name)["database"]["url"]
    # Every secret the config refers to resolved from the env the pods get from Secrets.
    if "REPSYS_DB_PASSWORD" in env_names:
        assert cfg.database.password is not None
        assert cfg.database.password.get_secret_value() == "value-of-REPSYS_DB_PASSWORD"
    if "REPSYS_REDIS_PASSWORD" in env_names:
        assert cfg.redis.password is not None
        assert cfg.redis.password.get_secret_value() == "value-of-REPSYS_REDIS_PASSWORD"


# --- secrets -----------------------------------------------------------------------------

_SECRETISH = re.compile(r"pass|secret|token|pin$|key$|credential", re.IGNORECASE)


def _secret_env_names(docs: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if "secretKeyRef" in env.get("valueFrom", {}):
                    names.add(env["name"])
    return names


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = [(path, value)]
        for k, v in value.items():
            out.extend(_walk(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _walk(v, f"{path}[{i}]")]
    return [(path, value)]


@pytest.mark.parametrize("name", CI_NAMES)
def test_no_secret_is_ever_inlined(name: str) -> None:
    docs = render_ci(name)
    # The chart creates no Secret: it only refers to existing ones by name.
    assert of_kind(docs, "Secret") == []
    provided: set[str] = set()
    for obj, spec in pod_specs(docs):
        for container in spec["containers"]:
            names = set()
            for env in container.get("env", []):
                names.add(env["name"])
                if "value" in env:
                    assert not _SECRETISH.search(env["name"]), f"{obj}: {env['name']} inline"
                else:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert set(ref) == {"name", "key"} and ref["name"] and ref["key"]
            provided = names if not provided else provided & names
    # Every secret-looking key of the config file is a reference to an env variable that
    # every container gets from a Secret (or a file), never a literal value.
    for cm in of_kind(docs, "ConfigMap"):
        if "repsys.yaml" not in cm["data"]:
            continue
        cfg = config_file(docs, cm["metadata"]["name"])
        for path, value in _walk(cfg):
            leaf = path.rsplit(".", 1)[-1]
            if leaf in ("password", "session_secret", "pin", "token") and value is not None:
                assert isinstance(value, dict), f"{path} is written inline"
                assert set(value) <= {"env", "file", "optional"}, path
                if "env" in value:
                    assert value["env"] in provided, f"{path}: {value['env']} not provided"


def test_the_full_example_references_its_secrets() -> None:
    docs = render_ci("full")
    dep = named(docs, "Deployment", f"{RELEASE}-repsys-plex-sender")
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PLEX_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "repsys-plex",
        "key": "password",
    }
    assert env["REPSYS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "repsys-db"
    assert env["REPSYS_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis-sentinel-secret",
        "key": "password",
    }
    cfg = config_file(docs)
    assert cfg["plex"]["password"] == {"env": "PLEX_PASSWORD"}
    assert cfg["redis"]["sentinel"]["password"] == {"env": "REPSYS_REDIS_SENTINEL_PASSWORD"}
    assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "plant-registry"}]


def test_passwords_in_urls_are_refused() -> None:
    msg = helm_error(merge(BASE, {"database": {"url": "postgresql+psycopg://u:hunter2@db/x"}}))
    assert msg.startswith(SCHEMA_REFUSAL)
    assert "- at '/database/url': 'postgresql+psycopg://u:hunter2@db/x' does not match" in msg
    msg = helm_error(merge(BASE, {"redis": {"url": "redis://:hunter2@redis:6379/0"}}))
    assert "- at '/redis/url': 'redis://:hunter2@redis:6379/0' does not match" in msg


def test_a_pod_local_sqlite_database_is_refused() -> None:
    msg = helm_error({"database": {"url": "sqlite:///var/repsys.db"}})
    assert "- at '/database/url': 'sqlite:///var/repsys.db' does not match" in msg


# --- one scheduler, PDBs, migration hook --------------------------------------------------


@pytest.mark.parametrize("name", CI_NAMES)
def test_exactly_one_scheduler(name: str) -> None:
    docs = render_ci(name)
    schedulers = [
        d
        for d in of_kind(docs, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "scheduler"
    ]
    if not ci_values(name).get("components", {}).get("scheduler", {}).get("enabled", True):
        assert schedulers == []
        return
    (scheduler,) = schedulers
    assert scheduler["spec"]["replicas"] == 1
    # Recreate: the old scheduler stops before the new one starts.
    assert scheduler["spec"]["strategy"] == {"type": "Recreate"}


def test_a_second_scheduler_is_refused() -> None:
    msg = helm_error(merge(BASE, {"components": {"scheduler": {"replicas": 2}}}))
    assert (
        msg
        == f"{SCHEMA_REFUSAL}\nrepsys:\n- at '/components/scheduler/replicas': value must be 1\n"
    )


def test_other_components_scale_with_rolling_updates() -> None:
    docs = render_ci("cluster")
    rules = named(docs, "Deployment", f"{RELEASE}-repsys-rules")
    assert rules["spec"]["replicas"] == 6
    assert rules["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


@pytest.mark.parametrize("name", CI_NAMES)
def test_every_deployment_has_a_pdb_selecting_its_pods(name: str) -> None:
    docs = render_ci(name)
    pdbs = {d["metadata"]["name"]: d for d in of_kind(docs, "PodDisruptionBudget")}
    for dep in of_kind(docs, "Deployment"):
        pdb = pdbs[dep["metadata"]["name"]]
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= (
            dep["spec"]["template"]["metadata"]["labels"].items()
        )
        assert ("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"])


def test_pdb_min_available_wins_when_set() -> None:
    docs = render_ci("full")
    assert (
        named(docs, "PodDisruptionBudget", f"{RELEASE}-repsys-runner")["spec"]["minAvailable"] == 0
    )
    assert (
        named(docs, "PodDisruptionBudget", f"{RELEASE}-repsys-web")["spec"]["maxUnavailable"] == 1
    )


def test_migration_runs_as_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = render_ci("sentinel")
    job = named(docs, "Job", f"{RELEASE}-repsys-migrate")
    hook = job["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--config", "/etc/repsys/repsys.yaml", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Hooks run before the release's ConfigMap exists: the Job reads its own hook
    # ConfigMap, created first (lower weight), with the very same config file.
    cm_name = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    hook_cm = named(docs, "ConfigMap", cm_name)
    assert hook_cm["metadata"]["annotations"]["helm.sh/hook"] == hook["helm.sh/hook"]
    assert int(hook_cm["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        hook["helm.sh/hook-weight"]
    )
    assert config_file(docs, cm_name) == config_file(docs)
    # The Job gets the database password the same way as the processes.
    env = {e["name"]: e for e in container["env"]}
    assert env["REPSYS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "repsys-db"


# --- network, web, monitoring flags -------------------------------------------------------


def test_network_policy_admits_scrapers_and_web_traffic_only() -> None:
    docs = render_ci("full")
    (policy,) = of_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "repsys",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert spec["policyTypes"] == ["Ingress"]
    metrics_rule, web_rule = spec["ingress"]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert web_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert web_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kong"
    }


def test_network_policy_restricts_egress_when_destinations_are_listed() -> None:
    (policy,) = of_kind(render_ci("cluster"), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    dns, *rest = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert rest == ci_values("cluster")["networkPolicy"]["egress"]


def test_web_service_and_ingress() -> None:
    docs = render_ci("full")
    svc = named(docs, "Service", f"{RELEASE}-repsys-web")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"] == {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    assert svc["metadata"]["annotations"] == {"konghq.com/protocol": "http"}
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "kong"
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/repsys"
    assert path["backend"]["service"] == {"name": svc["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [
        {"secretName": "repsys-tls", "hosts": ["repsys.plant.example"]}
    ]
    web = named(docs, "Deployment", f"{RELEASE}-repsys-web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_monitoring_objects_only_behind_their_flags() -> None:
    plain = {d["kind"] for d in render_ci("standalone")}
    assert not plain & {"ServiceMonitor", "PrometheusRule"}
    full = render_ci("full")
    (monitor,) = of_kind(full, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # Every component's Service carries the labels the ServiceMonitor selects.
    selected = monitor["spec"]["selector"]["matchLabels"].items()
    services = of_kind(full, "Service")
    assert len(services) == len(COMPONENTS)
    for svc in services:
        assert selected <= svc["metadata"]["labels"].items()
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}
    assert len(of_kind(full, "PrometheusRule")) == 1
    dashboards = [
        d for d in of_kind(full, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert len(dashboards) == 1 and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_notes_tell_what_to_do_next() -> None:
    notes = render_files(ci_values("full"))["repsys/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} logs job/{RELEASE}-repsys-migrate" in notes
    assert "https://repsys.plant.example/repsys" in notes
    assert "scheduler: 1 replica" in notes


# --- Redis and the database ----------------------------------------------------------------


def test_redis_by_url() -> None:
    cfg = config_file(render_ci("standalone"))
    assert cfg["redis"]["mode"] == "standalone"
    assert cfg["redis"]["url"] == "redis://redis-master.repsys.svc:6379/0"
    assert "password" not in cfg["redis"]


def test_redis_sentinel_as_the_ot_operator_names_its_service() -> None:
    cfg = config_file(render_ci("sentinel"))
    assert cfg["redis"]["mode"] == "sentinel"
    # RedisSentinel "redis-sentinel" in namespace "redis": Service "<name>-sentinel", 26379.
    assert cfg["redis"]["sentinel"] == {
        "master_name": "myMaster",
        "sentinels": ["redis-sentinel-sentinel.redis.svc:26379"],
    }
    assert cfg["redis"]["password"] == {"env": "REPSYS_REDIS_PASSWORD"}
    assert "url" not in cfg["redis"]


def test_redis_sentinel_defaults_to_the_release_namespace() -> None:
    cfg = config_file(render(merge(BASE, {"redis": {"mode": "sentinel"}})))
    assert cfg["redis"]["sentinel"]["sentinels"] == [
        f"redis-sentinel-sentinel.{NAMESPACE}.svc:26379"
    ]


def test_redis_cluster() -> None:
    cfg = config_file(render_ci("cluster"))
    assert cfg["redis"]["mode"] == "cluster"
    assert cfg["redis"]["url"] == "redis://redis-cluster-leader.redis.svc:6379/0"


def test_database_by_url_with_the_password_from_a_secret() -> None:
    cfg = config_file(render_ci("cluster"))
    assert cfg["database"] == {
        "url": "postgresql+psycopg://repsys@pg-rw.db.svc:5432/repsys",
        "password": {"env": "REPSYS_DB_PASSWORD"},
        "pool_size": 5,
    }


# --- values schema ---------------------------------------------------------------------------


def test_unknown_values_are_refused_with_their_path() -> None:
    msg = helm_error(merge(BASE, {"components": {"colector": {"enabled": True}}}))
    where = "- at '/components': additional properties 'colector' not allowed"
    assert msg == f"{SCHEMA_REFUSAL}\nrepsys:\n{where}\n"
    msg = helm_error(merge(BASE, {"redis": {"mode": "sentinal"}}))
    assert "- at '/redis/mode': value must be one of 'standalone', 'sentinel', 'cluster'" in msg


def test_security_settings_cannot_be_weakened() -> None:
    msg = helm_error(merge(BASE, {"securityContext": {"readOnlyRootFilesystem": False}}))
    assert "- at '/securityContext/readOnlyRootFilesystem': value must be true" in msg
    msg = helm_error(merge(BASE, {"podSecurityContext": {"runAsNonRoot": False}}))
    assert "- at '/podSecurityContext/runAsNonRoot': value must be true" in msg


def test_the_chart_owns_the_redis_database_and_http_sections() -> None:
    msg = helm_error(merge(BASE, {"config": {"redis": {"url": "redis://elsewhere:6379/0"}}}))
    assert "invalid propertyName 'redis'" in msg


#: Fields of Kubernetes' own objects (probe timing, resources), documented by their block.
_KUBERNETES_FIELDS = {"periodSeconds", "timeoutSeconds", "failureThreshold", "requests", "limits"}


def _values_lines() -> list[tuple[str, bool]]:
    """(key path, documented) of every key line of values.yaml.

    A key is documented by a comment line right above it or a comment on its own line.
    """
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    stack: list[tuple[int, str]] = []
    out = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        above = lines[i - 1].strip() if i else ""
        out.append((".".join(k for _, k in stack), above.startswith("#") or "#" in line))
    return out


def _strict_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Key paths the chart itself defines: properties of objects closed to unknown keys."""
    paths: set[str] = set()
    if schema.get("additionalProperties") is False:
        for key, sub in schema.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            paths.add(path)
            paths |= _strict_paths(sub, path)
    return paths


def test_values_yaml_documents_every_key() -> None:
    with helm.Chart.load(CHART) as chart:
        schema = chart.schema
    assert schema is not None
    strict = _strict_paths(schema)
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    component_doc = text[
        text.index("# -- One Deployment per component") : text.index("components:")
    ]
    undocumented = []
    for path, documented in _values_lines():
        key = path.rsplit(".", 1)[-1]
        if documented or path not in strict or key in _KUBERNETES_FIELDS:
            continue
        parts = path.split(".")
        if parts[0] == "components" and len(parts) == 3 and f"#   {key} " in component_doc:
            continue  # the keys every component shares are described once, above them
        undocumented.append(path)
    assert undocumented == []
    # And every key the schema knows is in values.yaml with its default, but the optional
    # ones whose absence means something (minAvailable unset: maxUnavailable applies).
    defaults = yaml.safe_load(text)
    missing = set()
    for path in strict - {"global"}:
        node = defaults
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.add(re.sub(r"^components\.[\w-]+\.|^probes\.\w+\.", "*.", path))
                break
            node = node[part]
    assert missing == {"*.pdb.minAvailable", "*.successThreshold", "*.initialDelaySeconds"}


def test_network_policy_admits_only_the_ingress_to_the_web_port_by_default() -> None:
    (policy,) = of_kind(render_ci("standalone"), "NetworkPolicy")
    web_rule = policy["spec"]["ingress"][1]
    assert web_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert web_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kong"}}}
    ]
    msg = helm_error(merge(BASE, {"networkPolicy": {"webFrom": []}}))
    assert "networkPolicy.webFrom is empty: name the ingress controller" in msg
    open_policy = of_kind(
        render(merge(BASE, {"networkPolicy": {"webFrom": [], "webFromAnywhere": True}})),
        "NetworkPolicy",
    )
    assert "from" not in open_policy[0]["spec"]["ingress"][1]


# --- report storage (issue 18) -------------------------------------------------------------


def test_reports_live_in_a_shared_object_store_never_a_pod_disk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runner and web are different pods: a `local` store would hide reports from the web."""
    msg = helm_error(merge(BASE, {"config": {"storage": {"type": "local"}}}))
    assert msg.startswith(SCHEMA_REFUSAL) and "/config/storage/type" in msg
    docs = render_ci("full")
    for env in _secret_env_names(docs):
        monkeypatch.setenv(env, "x")
    cfg = parse_config(config_file(docs), file="ci/full-values.yaml")
    assert (cfg.storage.type, cfg.storage.bucket, cfg.storage.account_key) == (
        "azure",
        "repsys-reports",
        None,  # workload identity: no key in any Secret
    )
    for _, spec in pod_specs(render_ci("full")):
        assert all("persistentVolumeClaim" not in v for v in spec.get("volumes", []))
