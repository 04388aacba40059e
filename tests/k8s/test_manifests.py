"""Every kustomize overlay under ``k8s/overlays``, built with ``kubectl kustomize``, against the Kubernetes schemas,
and the properties a safe deployment needs.

Schemas: ``kubernetes-validate`` (strict mode: an unknown or misspelt field is an error) for the oldest and the
newest Kubernetes release it bundles here, 1.34 and 1.37. The prometheus-operator resources (ServiceMonitor,
PrometheusRule) have no schema there; test_kustomize.py and test_alerts.py check them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from azure.servicebus._pyamqp.utils import generate_sas_token

from gateway_authz import gateways
from gateway_authz.config.loader import load_settings
from gateway_authz.core.errors import ConfigError
from gateway_authz.http.app import create_app
from tests._factories import fake_key

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("standalone", "sidecar", "ingress-nginx", "monitoring")
KUBERNETES_VERSIONS = ("1.34.0", "1.37.0")
DECISION, GRPC, ADMIN = 8080, 9001, 8081
SERVE_ARGS = ["serve", "--host", "0.0.0.0", "--admin-host", "0.0.0.0"]  # noqa: S104 (containers: the image's CMD)
CONTAINER_ARGS = [*SERVE_ARGS, "--config", "/etc/gateway-authz/config.yaml", "--grpc-port", str(GRPC)]
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"

Doc = dict[str, Any]


@cache
def build(overlay: str) -> tuple[Doc, ...]:
    """``kubectl kustomize k8s/overlays/<overlay>``, parsed (built once per test session)."""
    beside = Path(sys.executable).with_name("kubectl")  # a kubectl wheel installs it into the virtualenv
    kubectl = shutil.which("kubectl") or (str(beside) if beside.is_file() else None)
    if kubectl is None:
        from tests.integration._procs import missing_binary

        missing_binary("kubectl", "kubectl >= 1.27 (kustomize v5) builds the overlays")
    result = subprocess.run(
        [str(kubectl), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _documents() -> list[tuple[str, Doc]]:
    return [
        (f"{overlay}/{doc['kind']}/{doc['metadata']['name']}", doc)
        for overlay in OVERLAYS
        for doc in build(overlay)
        if doc["apiVersion"] != PROMETHEUS_OPERATOR
    ]


def _in(overlay: str) -> list[Doc]:
    return list(build(overlay))


def _named(doc: Doc, name: str | None) -> bool:
    """``name`` matches a generated ConfigMap's name with or without kustomize's hash suffix."""
    actual = doc["metadata"]["name"]
    return name is None or actual == name or re.fullmatch(re.escape(name) + r"-[a-z0-9]{10}", actual) is not None


def _one(overlay: str, kind: str, name: str | None = None) -> Doc:
    found = [d for d in _in(overlay) if d["kind"] == kind and _named(d, name)]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def _containers(pod: Doc) -> Iterator[Doc]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _authz_container(pod: Doc) -> Doc:
    (container,) = [c for c in _containers(pod) if c["image"].startswith("gateway-authz:")]
    return container


def _workloads() -> list[tuple[str, Doc]]:
    return [(n, d) for n, d in _documents() if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Pod")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The built documents are parameters; building needs kubectl, so it happens at collection, not at import."""
    if {"name", "doc"} <= set(metafunc.fixturenames):
        docs = _documents()
        metafunc.parametrize(("name", "doc"), docs, ids=[n for n, _ in docs])
    if {"name", "workload"} <= set(metafunc.fixturenames):
        workloads = _workloads()
        metafunc.parametrize(("name", "workload"), workloads, ids=[n for n, _ in workloads])


# --------------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifest_is_valid_for_kubernetes(name: str, doc: Doc, version: str) -> None:
    """Each built document validates (strict) against the named Kubernetes release's schemas."""
    assert kubernetes_validate.validate(doc, version, strict=True)


def test_each_overlay_holds_what_its_one_apply_needs() -> None:
    """Each overlay is one `kubectl apply -k`; the service's own objects live in the overlay's namespace."""
    service_kinds = {
        "Namespace",
        "ConfigMap",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    assert {d["kind"] for d in _in("standalone")} >= service_kinds
    assert {d["kind"] for d in _in("ingress-nginx")} >= {*service_kinds, "Ingress"}
    assert {d["kind"] for d in _in("monitoring")} >= {*service_kinds, "ServiceMonitor", "PrometheusRule"}
    assert {d["kind"] for d in _in("sidecar")} >= {"Namespace", "ConfigMap", "Deployment", "NetworkPolicy", "Service"}
    for overlay in OVERLAYS:
        assert not [d for d in _in(overlay) if d["kind"] == "Secret"], "keys are never shipped: the Secret is yours"
    for doc in _in("standalone"):
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "gateway-authz", doc["metadata"]


# --------------------------------------------------------------------------------------------------- workloads


def test_every_container_meets_the_restricted_pod_security_standard(name: str, workload: Doc) -> None:
    """Non-root, no privilege escalation, ALL capabilities dropped, seccomp RuntimeDefault, read-only root."""
    pod = _pod(workload)
    assert pod["automountServiceAccountToken"] is False
    pod_ctx = pod.get("securityContext", {})
    assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for container in _containers(pod):
        ctx = container["securityContext"]
        assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, container["name"]
        assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, container["name"]
        assert ctx["allowPrivilegeEscalation"] is False, container["name"]
        assert ctx["readOnlyRootFilesystem"] is True, container["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"] and "add" not in ctx["capabilities"], container["name"]
        assert ctx.get("seccompProfile", pod_ctx.get("seccompProfile"))["type"] == "RuntimeDefault"
        assert not ctx.get("privileged", False)
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), (container["name"], kind)


@pytest.mark.parametrize("directory", ["standalone", "sidecar"])
def test_gateway_authz_container_probes_ports_and_command(directory: str) -> None:
    """Startup and liveness /healthz, readiness /readyz, on the admin port; the serve command; all three ports.

    Startup must not wait for readiness: a Pod whose keys are missing is unready, and a startup probe on /readyz
    would have kubelet restart it over and over (the crash loop contract §7 rules out).
    """
    container = _authz_container(_pod(_one(directory, "Deployment")))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"decision": DECISION, "grpc": GRPC, "admin": ADMIN}
    assert container["args"] == CONTAINER_ARGS
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (path, ADMIN), probe


def test_service_deployment_rolls_and_drains_safely() -> None:
    """>= 2 replicas, maxUnavailable 0, preStop sleep, and a grace period longer than preStop plus the drain."""
    deployment = _one("standalone", "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    pod = _pod(deployment)
    container = _authz_container(pod)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain_seconds = 10  # ServeOptions.shutdown_timeout
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + drain_seconds
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    account = _one("standalone", "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_service_exposes_decision_grpc_and_admin_ports() -> None:
    """The Service maps 8080, 9001 and 8081 to the container's named ports and selects the Deployment's Pods."""
    deployment = _one("standalone", "Deployment")
    container_ports = {p["name"]: p["containerPort"] for p in _authz_container(_pod(deployment))["ports"]}
    service = _one("standalone", "Service", "gateway-authz")
    assert {p["port"]: container_ports[p["targetPort"]] for p in service["spec"]["ports"]} == {
        DECISION: DECISION,
        GRPC: GRPC,
        ADMIN: ADMIN,
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    headless = _one("standalone", "Service", "gateway-authz-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["selector"] == service["spec"]["selector"]


def test_pdb_and_hpa_target_the_deployment() -> None:
    """The PDB lets at most one replica go at a time; the HPA scales the Deployment on CPU from at least 2."""
    deployment = _one("standalone", "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = _one("standalone", "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    hpa = _one("standalone", "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"


def _peers_by_port(policy: Doc) -> dict[int, list[Doc]]:
    out: dict[int, list[Doc]] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule.get("ports") or [{"port": None}]:
            out.setdefault(port["port"], []).extend(rule.get("from") or [{}])
    return out


def test_network_policy_lets_only_gateways_reach_the_decision_ports() -> None:
    """8080 and 9001: only Pods labelled gateway-authz/client or ingress-nginx's; 8081: only Prometheus."""
    policy = _one("standalone", "NetworkPolicy")
    labels = _one("standalone", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    peers = _peers_by_port(policy)
    assert set(peers) == {DECISION, GRPC, ADMIN}  # no rule without ports, no other port
    for port in (DECISION, GRPC):
        for peer in peers[port]:
            pods = peer.get("podSelector", {}).get("matchLabels", {})
            namespaces = peer.get("namespaceSelector", {}).get("matchLabels", {})
            assert pods, f"port {port}: a peer without a pod selector admits every Pod"
            assert pods == {"gateway-authz/client": "true"} or (
                namespaces == {"kubernetes.io/metadata.name": "ingress-nginx"}
                and pods == {"app.kubernetes.io/name": "ingress-nginx"}
            ), peer
    for peer in peers[ADMIN]:
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


# --------------------------------------------------------------------------------------------------- config + keys


def _mounts(directory: str) -> tuple[Doc, dict[str, Doc], dict[str, Doc]]:
    pod = _pod(_one(directory, "Deployment"))
    container = _authz_container(pod)
    return container, {m["name"]: m for m in container["volumeMounts"]}, {v["name"]: v for v in pod["volumes"]}


def _config_and_secret(directory: str) -> tuple[str, str, str]:
    """(config text, directory the Secret is mounted at, Secret name) as the gateway-authz container sees them."""
    container, mounts, volumes = _mounts(directory)
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    (config_mount,) = [m for m in mounts.values() if m["mountPath"] == str(config_path.parent)]
    config_map = _one(directory, "ConfigMap", volumes[config_mount["name"]]["configMap"]["name"])
    (secret_volume,) = [v for v in volumes.values() if "secret" in v]
    assert secret_volume["secret"]["optional"] is True  # no Secret yet: the Pod starts, unready (contract §7)
    secret_mount = mounts[secret_volume["name"]]
    for mount in (config_mount, secret_mount):  # whole directories: kubelet never updates a subPath mount
        assert mount["readOnly"] is True and "subPath" not in mount and "subPathExpr" not in mount
    assert secret_volume["secret"]["defaultMode"] & 0o007 == 0  # not world-readable
    return config_map["data"][config_path.name], secret_mount["mountPath"], secret_volume["secret"]["secretName"]


def _documented_secret(secret: str) -> set[str]:
    """The entries docs/kubernetes.md's `kubectl create secret generic <secret>` command creates."""
    text = (REPO / "docs" / "kubernetes.md").read_text()
    match = re.search(rf"create secret generic {re.escape(secret)}((?:[^\n]*\\\n)*[^\n]*)", text)
    assert match, f"docs/kubernetes.md has no command creating {secret}"
    return set(re.findall(r"--from-literal=([\w.-]+)=", match[1]))


@pytest.mark.parametrize("directory", ["standalone", "sidecar"])
def test_keys_are_secret_files_referenced_with_file(directory: str) -> None:
    """Every key in the config is {file: <secret mount>/<name>}; the documented command creates each of them."""
    text, secret_dir, secret = _config_and_secret(directory)
    referenced = re.findall(r"\{file:\s*([^}\s]+)\s*\}", text)
    assert referenced and all(Path(p).parent == Path(secret_dir) for p in referenced), referenced
    assert {Path(p).name for p in referenced} == _documented_secret(secret)
    keys = list(_key_values(yaml.safe_load(text)))
    assert len(keys) == len(referenced) and all(list(k) == ["file"] for k in keys), keys  # no literal, no {env:}


def _key_values(node: object) -> Iterator[Any]:
    """Every primaryKey / secondaryKey value anywhere in a config tree."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name in ("primaryKey", "secondaryKey"):
                yield value
            else:
                yield from _key_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _key_values(item)


@pytest.mark.parametrize("directory", ["standalone", "sidecar"])
def test_config_map_loads_with_the_secret_files_in_place(directory: str, tmp_path: Path) -> None:
    """Before the Secret exists the service loads unready, naming every key file; with them it loads whole."""
    text, secret_dir, secret = _config_and_secret(directory)
    config = tmp_path / "config.yaml"
    config.write_text(text.replace(secret_dir.rstrip("/") + "/", f"{tmp_path}/secrets/"))
    (tmp_path / "secrets").mkdir()
    names = _documented_secret(secret)
    with pytest.raises(ConfigError) as caught:  # config validate: every missing key is a problem
        load_settings(config)
    assert len(caught.value.problems) == len(names)
    unready = load_settings(config, allow_missing_keys=True)  # serve: starts, unready, names them all
    assert len(unready.unavailable_keys()) == len(names)
    assert all(any(f"/secrets/{n} is missing" in m for m in unready.unavailable_keys()) for n in names)
    for name in names:
        (tmp_path / "secrets" / name).write_text(fake_key(name))
    settings = load_settings(config)
    assert settings.namespaces and settings.cache.config_ttl_seconds <= 60


# --------------------------------------------------------------------------------------------------- gateway configs

# Which ConfigMap carries which shipped gateway configuration (gateway_authz/gateways/<key>), byte for byte.
GATEWAY_CONFIG_MAPS = {
    ("sidecar", "gateway-authz-envoy"): (
        "envoy-http.yaml",
        "envoy-grpc.yaml",
        "envoy-http-tls.yaml",
        "envoy-grpc-tls.yaml",
    ),
    ("ingress-nginx", "gateway-authz-nginx"): ("nginx.conf", "nginx-tls.conf"),
}


@pytest.mark.parametrize(("where", "keys"), GATEWAY_CONFIG_MAPS.items(), ids=lambda v: "-".join(v))
def test_config_map_carries_the_shipped_gateway_files_byte_for_byte(where: tuple[str, str], keys: Any) -> None:
    """The package files are the single source: a ConfigMap whose data differs from them (one byte) fails."""
    data = _one(where[0], "ConfigMap", where[1])["data"]
    assert sorted(data) == sorted(keys)
    for key in keys:
        shipped = gateways.path(key).read_bytes()
        assert data[key].encode() == shipped, (
            f"{where[1]} data {key!r} differs from gateway_authz/gateways/{key}: run `bash .ci/sync-k8s`"
        )


def test_every_shipped_gateway_file_is_in_a_config_map() -> None:
    carried = sorted(key for keys in GATEWAY_CONFIG_MAPS.values() for key in keys)
    assert carried == sorted(gateways.NAMES)
    assert all(gateways.path(name).is_file() for name in gateways.NAMES)
    with pytest.raises(KeyError):
        gateways.path("../pyproject.toml")


# --------------------------------------------------------------------------------------------------- sidecar


def test_sidecar_wires_envoy_to_gateway_authz_over_loopback() -> None:
    """Envoy's config comes from the generated ConfigMap, and its clusters point at the Pod's containers."""
    pod = _pod(_one("sidecar", "Deployment"))
    authz = _authz_container(pod)
    assert authz in pod["initContainers"] and authz["restartPolicy"] == "Always"  # native sidecar: up first
    (envoy,) = [c for c in pod["containers"] if c["name"] == "envoy"]
    (mount,) = envoy["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = _one("sidecar", "ConfigMap", volume["configMap"]["name"])
    config_file = Path(envoy["args"][envoy["args"].index("-c") + 1])
    assert config_file.parent == Path(mount["mountPath"]) and config_file.name in config_map["data"]
    authz_ports = {p["name"]: p["containerPort"] for p in authz["ports"]}
    for key in config_map["data"]:
        envoy_config = yaml.safe_load(gateways.path(key).read_text())
        clusters = {c["name"]: c for c in envoy_config["static_resources"]["clusters"]}
        authz_clusters = [c for n, c in clusters.items() if n.startswith("gateway_authz")]
        (cluster,) = authz_clusters
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        expected = authz_ports["grpc" if "grpc" in key else "decision"]
        assert (address["address"], address["port_value"]) == ("127.0.0.1", expected), key
        listener_port = envoy_config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        # The Deployment runs the plain-text variant; a TLS variant listens on 443 (an overlay changes the port).
        assert listener_port == (443 if key.endswith("-tls.yaml") else envoy["ports"][0]["containerPort"]), key
    policy = _one("sidecar", "NetworkPolicy")
    open_ports = [p["port"] for rule in policy["spec"]["ingress"] if "from" not in rule for p in rule["ports"]]
    assert open_ports == [envoy["ports"][0]["containerPort"]]  # from anywhere: only Envoy's listener


# --------------------------------------------------------------------------------------------------- ingress-nginx


def test_ingress_annotations_point_at_the_service() -> None:
    """auth-url is the Service's /auth; the x-authz-* headers are copied; the spoofable inputs are overwritten."""
    annotations = _one("ingress-nginx", "Ingress")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    url = urlsplit(annotations[prefix + "auth-url"])
    service = _one("standalone", "Service", "gateway-authz")
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert (url.port, url.path) == (DECISION, "/auth")
    headers = [h.strip() for h in annotations[prefix + "auth-response-headers"].split(",")]
    assert headers == ["x-authz-auth", "x-authz-principal", "x-authz-right"]
    assert annotations[prefix + "auth-method"] == "GET"  # makes the controller set X-Original-URI itself
    namespace, name = annotations[prefix + "auth-proxy-set-headers"].split("/")
    config_map = _one("ingress-nginx", "ConfigMap", name)
    assert config_map["metadata"]["namespace"] == namespace
    assert config_map["data"] == {"X-Original-Host": "$http_host"}
    nginx_conf = gateways.path("nginx.conf").read_text()
    assert f"server {url.hostname}:{url.port};" in nginx_conf and "/auth;" in nginx_conf  # the CI equivalent


async def test_ingress_nginx_auth_request_is_decided_right(aiohttp_client: Any, tmp_path: Path) -> None:
    """What ingress-nginx sends (Host = the auth host, X-Original-*) resolves the client's namespace and path."""
    text, secret_dir, secret = _config_and_secret("standalone")
    (tmp_path / "secrets").mkdir()
    for name in _documented_secret(secret):
        (tmp_path / "secrets" / name).write_text(fake_key(name))
    config = tmp_path / "config.yaml"
    config.write_text(text.replace(secret_dir.rstrip("/") + "/", f"{tmp_path}/secrets/"))
    settings = load_settings(config)
    client = await aiohttp_client(create_app(settings, audit_sink=lambda _line: None, watch_config=False))
    host = _one("ingress-nginx", "Ingress")["spec"]["rules"][0]["host"]
    token = generate_sas_token(  # type: ignore[no-untyped-call]
        f"sb://{host}/orders", "orders-send", fake_key("orders-send-primary"), 4_000_000_000
    )
    base = {
        "Host": "gateway-authz.gateway-authz.svc.cluster.local",
        "X-Original-URL": f"http://{host}/orders?x=1",
        "X-Original-Method": "POST",
        "X-Original-URI": "/orders?x=1",
        "X-Original-Host": host,
        "X-Sent-From": "nginx-ingress-controller",
    }
    allowed = await client.get("/auth", headers={**base, "ServiceBusAuthorization": token})
    assert allowed.status == 200 and allowed.headers["x-authz-principal"] == "orders-send"
    assert (await client.get("/auth", headers=base)).status == 401
    elsewhere = {**base, "X-Original-URI": "/invoices", "ServiceBusAuthorization": token}
    assert (await client.get("/auth", headers=elsewhere)).status in (401, 403)


# --------------------------------------------------------------------------------------------------- image


def test_dockerfile_installs_from_the_lock_and_runs_non_root() -> None:
    """The locked pins with their hashes, then the package without resolving again; a numeric non-root USER
    matching runAsUser, and the serve command the manifests use."""
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip install --require-hashes -r requirements/service\.txt(\s|$)", text)
    assert re.search(r"pip install --no-deps \.(\s|$)", text)
    assert "!requirements/service.txt" in (REPO / ".dockerignore").read_text().splitlines()
    (user,) = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    uid = int(user.split(":")[0])
    assert uid != 0
    assert _pod(_one("standalone", "Deployment"))["securityContext"]["runAsUser"] == uid
    (entrypoint,) = re.findall(r"^ENTRYPOINT\s+(\[.*\])", text, flags=re.MULTILINE)
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])", text, flags=re.MULTILINE)
    assert json.loads(entrypoint) == ["gateway-authz"] and json.loads(cmd) == SERVE_ARGS
    assert {int(p) for p in re.findall(r"^EXPOSE\s+(.+)$", text, flags=re.MULTILINE)[0].split()} == {
        DECISION,
        ADMIN,
        GRPC,
    }
