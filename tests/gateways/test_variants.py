"""The shipped gateway configs as files: each TLS variant is its plain-text config plus TLS, nothing else.

A change made to one variant and not the other fails here, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from gateway_authz import gateways


@pytest.mark.parametrize("name", ["envoy-http", "envoy-grpc"])
def test_envoy_tls_variant_is_the_plain_config_with_tls_on_443(name: str) -> None:
    plain = yaml.safe_load(gateways.path(f"{name}.yaml").read_text())
    tls = yaml.safe_load(gateways.path(f"{name}-tls.yaml").read_text())
    (listener,) = tls["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 443
    (chain,) = listener["filter_chains"]
    context = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    (certificate,) = context["tls_certificates"]
    assert certificate["certificate_chain"]["filename"] == f"{gateways.TLS_DIR}/tls.crt"
    assert certificate["private_key"]["filename"] == f"{gateways.TLS_DIR}/tls.key"
    stripped: dict[str, Any] = copy.deepcopy(tls)
    (stripped_listener,) = stripped["static_resources"]["listeners"]
    del stripped_listener["filter_chains"][0]["transport_socket"]
    stripped_listener["address"]["socket_address"]["port_value"] = 10000
    assert stripped == plain


_NGINX_TLS = re.compile(r"^ *(listen 443 ssl;|ssl_\w+ .*;)\n", re.MULTILINE)


def test_nginx_tls_variant_is_the_plain_config_with_tls_on_443() -> None:
    plain = gateways.path("nginx.conf").read_text()
    tls = gateways.path("nginx-tls.conf").read_text()
    lines = _NGINX_TLS.findall(tls)
    assert "listen 443 ssl;" in lines
    assert f"ssl_certificate     {gateways.TLS_DIR}/tls.crt;" in lines
    assert f"ssl_certificate_key {gateways.TLS_DIR}/tls.key;" in lines
    assert "ssl_protocols       TLSv1.2 TLSv1.3;" in lines
    without_comments = [line for line in _NGINX_TLS.sub("", tls).splitlines() if not line.strip().startswith("#")]
    plain_lines = [line for line in plain.splitlines() if not line.strip().startswith("#")]
    assert [line for line in plain_lines if line.strip() != "listen 8080;"] == without_comments
    assert "        listen 8080;" in plain_lines


def test_unknown_names_are_refused() -> None:
    with pytest.raises(KeyError):
        gateways.path("../pyproject.toml")
