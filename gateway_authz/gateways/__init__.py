"""The gateway configurations this project ships, as plain files inside the package.

``envoy-http.yaml`` and ``envoy-grpc.yaml`` (the Envoy sidecar, HTTP and gRPC ext_authz) and ``nginx.conf`` (NGINX
``auth_request``) listen in plain text, for use inside a mesh; the ``-tls`` variants are the same configs
terminating TLS on 443 with the certificate of a Kubernetes Secret mounted at ``/etc/gateway-tls``. They are
the single source: the Kubernetes ConfigMaps under ``k8s/`` carry them byte for byte, and the integration tests
run them with only addresses, ports and file paths replaced.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["NAMES", "TLS_DIR", "path"]

NAMES: tuple[str, ...] = (
    "envoy-http.yaml",
    "envoy-grpc.yaml",
    "nginx.conf",
    "envoy-http-tls.yaml",
    "envoy-grpc-tls.yaml",
    "nginx-tls.conf",
)
TLS_DIR = "/etc/gateway-tls"  # where the TLS variants read tls.crt and tls.key (a kubernetes.io/tls Secret)


def path(name: str) -> Path:
    """The file of the shipped configuration ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise KeyError(f"no shipped gateway configuration {name!r}; there are {', '.join(NAMES)}")
    return Path(str(resources.files(__name__).joinpath(name)))
