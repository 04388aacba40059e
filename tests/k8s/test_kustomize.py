"""The kustomize layout itself: every overlay builds with plain ``kubectl kustomize``; namespace, images and config
come from kustomize; the gateway files under ``k8s/gateways`` are the package's, byte for byte; images are pinned.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gateway_authz import gateways
from gateway_authz.core.build_info import package_version

from .test_manifests import K8S, OVERLAYS, PROMETHEUS_OPERATOR, Doc, build

# k8s/gateways/<dir>/<file> is a copy of gateway_authz/gateways/<file>.
COPIES = {
    "envoy": ("envoy-http.yaml", "envoy-grpc.yaml", "envoy-http-tls.yaml", "envoy-grpc-tls.yaml"),
    "nginx": ("nginx.conf", "nginx-tls.conf"),
}
EXACT_TAG = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+$")


@pytest.mark.parametrize(("directory", "name"), [(d, n) for d, names in COPIES.items() for n in names])
def test_gateway_copies_are_the_package_files_byte_for_byte(directory: str, name: str) -> None:
    """Edit gateway_authz/gateways/<name>, forget `bash .ci/sync-k8s`, and this fails."""
    copy = K8S / "gateways" / directory / name
    assert copy.read_bytes() == gateways.path(name).read_bytes(), f"{copy} differs: run `bash .ci/sync-k8s`"


def test_every_shipped_gateway_file_has_a_copy() -> None:
    assert sorted(n for names in COPIES.values() for n in names) == sorted(gateways.NAMES)


def test_base_hard_codes_no_namespace_and_no_image_tag() -> None:
    for path in (K8S / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") not in ("Kustomization", None):
                assert "namespace" not in doc.get("metadata", {}), path
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == ["gateway-authz"]  # the tag comes from an overlay's images:


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned_to_an_exact_version(overlay: str) -> None:
    """Envoy and every other image: an exact release, never `latest` or `v1.36-latest`; ours is this version."""
    for doc in build(overlay):
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert EXACT_TAG.match(container["image"]), container["image"]
            if container["image"].startswith("gateway-authz:"):
                assert container["image"] == f"gateway-authz:{package_version()}"
            if container["name"] == "envoy":
                assert container["image"] == "envoyproxy/envoy:v1.40.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_comes_from_a_generated_config_map(overlay: str) -> None:
    """The gateway-authz config is generated from config.yaml (not inline YAML) and is what the Pod mounts."""
    docs = build(overlay)
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    source = K8S / ("overlays/sidecar" if overlay == "sidecar" else "base") / "config.yaml"
    (carried,) = [m for m in maps.values() if m.get("data", {}).get("config.yaml") is not None]
    assert carried["data"]["config.yaml"] == source.read_text()


def test_the_admin_port_is_never_exposed_outside_the_cluster() -> None:
    for overlay in OVERLAYS:
        for doc in build(overlay):
            if doc["kind"] == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", doc["metadata"]["name"]
            if doc["kind"] == "Ingress":
                backends = re.findall(r"'number': (\d+)", str(doc["spec"]))
                assert "8081" not in backends


def test_monitoring_resources_have_the_operator_shape() -> None:
    """No strict schema for CRDs here: check the fields prometheus-operator needs, and nothing misspelt at the top."""
    docs = {d["kind"]: d for d in build("monitoring") if d["apiVersion"] == PROMETHEUS_OPERATOR}
    assert set(docs) == {"ServiceMonitor", "PrometheusRule"}
    for doc in docs.values():
        assert (
            set(doc) == {"apiVersion", "kind", "metadata", "spec"} and doc["metadata"]["namespace"] == "gateway-authz"
        )
    monitor = docs["ServiceMonitor"]["spec"]
    services = [d for d in build("monitoring") if d["kind"] == "Service"]
    selected = [s for s in services if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["gateway-authz"]  # not the headless one too
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]} and endpoint["path"] == "/metrics"
    dashboards = [d for d in build("monitoring") if d["kind"] == "ConfigMap" and "grafana-dashboard.json" in d["data"]]
    assert len(dashboards) == 1 and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    return root


def _kustomize(root: Path, overlay: str) -> list[Doc]:
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    result = subprocess.run(
        [kubectl, "kustomize", str(root / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_namespace_and_image_change_with_kustomize_alone(tmp_path: Path) -> None:
    """`namespace:` and `images:` in the overlay move everything, the Ingress annotations' namespaces included."""
    build("standalone")  # kubectl present (or skipped/failed as every kustomize test is)
    root = _copy_tree(tmp_path)
    standalone = root / "overlays" / "standalone" / "kustomization.yaml"
    text = standalone.read_text().replace("namespace: gateway-authz", "namespace: authz-prod")
    standalone.write_text(text.replace("newTag: 0.1.0", "newTag: 9.9.9"))
    app = root / "overlays" / "ingress-nginx" / "app" / "kustomization.yaml"
    app.write_text(app.read_text().replace("namespace: default", "namespace: shop"))
    docs = _kustomize(root, "ingress-nginx")
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert (
        urlsplit(annotations["nginx.ingress.kubernetes.io/auth-url"]).hostname
        == "gateway-authz.authz-prod.svc.cluster.local"
    )
    assert annotations["nginx.ingress.kubernetes.io/auth-proxy-set-headers"] == "shop/gateway-authz-auth-headers"
    assert ingress["metadata"]["namespace"] == "shop"
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == "authz-prod"
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == "authz-prod"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "gateway-authz:9.9.9"
