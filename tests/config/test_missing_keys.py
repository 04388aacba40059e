"""Key material that is missing or empty (contract §7): the service loads, is unready, answers 503 for what needs
the key, and serves as soon as the key appears. ``config validate`` and the other offline commands stay strict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway_authz.config.loader import load_settings
from gateway_authz.config.reload import ConfigHolder
from gateway_authz.core.appkeys import HOLDER as HOLDER_KEY
from gateway_authz.core.errors import ConfigError
from gateway_authz.core.metrics import Metrics
from gateway_authz.decision.audit import make_ops_logger
from gateway_authz.http.app import create_admin_app, create_app
from gateway_authz.sas.token import sign_sas
from tests._factories import fake_key

HOST = "contoso.servicebus.windows.net"
ORDERS_KEY = fake_key("orders send")
ROOT_KEY = fake_key("root primary")
FAR = 4_000_000_000


def _write_config(tmp_path: Path, *, orders_primary: object) -> Path:
    config = {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": [HOST],
                "authorizationRules": [
                    {
                        "keyName": "RootManageSharedAccessKey",
                        "primaryKey": ROOT_KEY,
                        "rights": ["Manage", "Listen", "Send"],
                    }
                ],
                "hybridConnections": [
                    {
                        "name": "orders",
                        "authorizationRules": [
                            {"keyName": "orders-send", "primaryKey": orders_primary, "rights": ["Send"]},
                        ],
                    },
                    {"name": "public", "requiresClientAuthorization": False},
                ],
            }
        ],
        "cache": {"configTtlSeconds": 0.05},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _key_file(text: str) -> Callable[[Path], None]:
    def prepare(directory: Path) -> None:
        (directory / "keys").mkdir()
        (directory / "keys" / "orders").write_text(text)

    return prepare


def _send(key: str, key_name: str = "orders-send") -> str:
    return sign_sas(f"sb://{HOST}/orders", key_name, key, FAR)


@pytest.mark.parametrize(
    ("reference", "prepare", "why"),
    [
        ({"file": "keys/orders"}, lambda d: None, "secret file keys/orders is missing"),
        ({"file": "keys/orders"}, _key_file(""), "is empty"),
        (
            {"file": "keys/orders"},
            _key_file("\n"),
            "is empty",
        ),
    ],
    ids=["file-absent", "file-empty", "file-only-newline"],
)
def test_missing_key_file_loads_as_unavailable_for_serve_and_fails_validation(
    tmp_path: Path, reference: dict[str, str], prepare: Callable[[Path], None], why: str
) -> None:
    prepare(tmp_path)
    path = _write_config(tmp_path, orders_primary=reference)
    settings = load_settings(path, allow_missing_keys=True)
    (missing,) = settings.unavailable_keys()
    assert (
        missing.startswith("namespaces[0].hybridConnections[0].authorizationRules[0].primaryKey: ") and why in missing
    )
    with pytest.raises(ConfigError):  # validate, check and token stay strict
        load_settings(path)


def test_empty_env_variable_is_unavailable_but_an_unset_one_is_an_error(tmp_path: Path) -> None:
    path = _write_config(tmp_path, orders_primary={"env": "ORDERS_KEY"})
    settings = load_settings(path, environ={"ORDERS_KEY": ""}, allow_missing_keys=True)
    assert settings.unavailable_keys() == (
        "namespaces[0].hybridConnections[0].authorizationRules[0].primaryKey: environment variable ORDERS_KEY is empty",
    )
    with pytest.raises(ConfigError, match="ORDERS_KEY is not set"):
        load_settings(path, environ={}, allow_missing_keys=True)


def test_unreadable_or_bad_key_file_is_still_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "orders").write_text(" padded \n")
    path = _write_config(tmp_path, orders_primary={"file": "keys/orders"})
    with pytest.raises(ConfigError, match="whitespace"):
        load_settings(path, allow_missing_keys=True)


def test_missing_key_reference_never_shows_a_key(tmp_path: Path) -> None:
    path = _write_config(tmp_path, orders_primary={"file": "keys/orders"})
    settings = load_settings(path, allow_missing_keys=True)
    assert ROOT_KEY not in repr(settings.namespaces) and ROOT_KEY not in str(settings.unavailable_keys())


def test_fingerprint_changes_when_the_missing_key_appears(tmp_path: Path) -> None:
    path = _write_config(tmp_path, orders_primary={"file": "keys/orders"})
    before = load_settings(path, allow_missing_keys=True).fingerprint
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "orders").write_text("")
    empty = load_settings(path, allow_missing_keys=True).fingerprint
    (tmp_path / "keys" / "orders").write_text(ORDERS_KEY)
    after = load_settings(path, allow_missing_keys=True)
    assert len({before, empty, after.fingerprint}) == 3 and after.unavailable_keys() == ()


async def _clients(aiohttp_client: Any, path: Path) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
    settings = load_settings(path, allow_missing_keys=True)
    app = create_app(settings, config_path=str(path), audit_sink=lambda _line: None, ops_sink=lambda _line: None)
    decide = await aiohttp_client(app)
    admin = await aiohttp_client(create_admin_app(app))
    return decide, admin


async def _check(client: TestClient[Any, Any], token: str | None, path: str = "/orders") -> int:
    headers = {"Host": HOST, **({"ServiceBusAuthorization": token} if token else {})}
    async with client.post("/ext_authz" + path, headers=headers) as response:
        return response.status


async def test_missing_key_makes_readyz_503_naming_it_and_healthz_200(aiohttp_client: Any, tmp_path: Path) -> None:
    _decide, admin = await _clients(aiohttp_client, _write_config(tmp_path, orders_primary={"file": "keys/orders"}))
    async with admin.get("/healthz") as healthz:
        assert healthz.status == 200
    async with admin.get("/readyz") as readyz:
        body = await readyz.json()
        assert readyz.status == 503 and body["status"] == "unready"
        assert body["missing_keys"] == [
            "namespaces[0].hybridConnections[0].authorizationRules[0].primaryKey: secret file keys/orders is missing"
        ]


async def test_decision_needing_the_missing_key_is_503_key_unavailable(aiohttp_client: Any, tmp_path: Path) -> None:
    """Whatever the token (it may well be signed with the key not loaded yet), the answer is 503, never 401 or 200."""
    decide, _admin = await _clients(aiohttp_client, _write_config(tmp_path, orders_primary={"file": "keys/orders"}))
    async with decide.post(
        "/ext_authz/orders", headers={"Host": HOST, "ServiceBusAuthorization": _send(ORDERS_KEY)}
    ) as r:
        assert r.status == 503 and (await r.json())["reason"] == "key_unavailable"
    assert await _check(decide, _send(fake_key("anything"))) == 503


async def test_decisions_not_needing_the_missing_key_still_answer(aiohttp_client: Any, tmp_path: Path) -> None:
    decide, _admin = await _clients(aiohttp_client, _write_config(tmp_path, orders_primary={"file": "keys/orders"}))
    root = sign_sas(f"sb://{HOST}/orders", "RootManageSharedAccessKey", ROOT_KEY, FAR)
    assert await _check(decide, root) == 200
    assert await _check(decide, None, "/public") == 200  # anonymous sender
    assert await _check(decide, None) == 401
    assert await _check(decide, sign_sas(f"sb://{HOST}/orders", "RootManageSharedAccessKey", ORDERS_KEY, FAR)) == 401


async def test_service_becomes_ready_by_itself_when_the_key_appears(aiohttp_client: Any, tmp_path: Path) -> None:
    path = _write_config(tmp_path, orders_primary={"file": "keys/orders"})
    decide, admin = await _clients(aiohttp_client, path)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "orders").write_text(ORDERS_KEY)
    holder = decide.app[HOLDER_KEY]
    await holder.reload_in_thread()  # or the watcher (every 0.05 s) got there first
    assert holder.runtime.settings.unavailable_keys() == ()
    async with admin.get("/readyz") as readyz:
        assert readyz.status == 200 and "missing_keys" not in await readyz.json()
    assert await _check(decide, _send(ORDERS_KEY)) == 200
    assert await _check(decide, _send(fake_key("wrong"))) == 401


def test_reload_that_loses_a_serving_key_keeps_the_last_good_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "orders").write_text(ORDERS_KEY)
    path = _write_config(tmp_path, orders_primary={"file": "keys/orders"})
    settings = load_settings(path, allow_missing_keys=True)
    events: list[bytes] = []
    holder = ConfigHolder(
        str(path),
        settings,
        loader=lambda p: load_settings(p, allow_missing_keys=True),
        metrics=Metrics(),
        ops_log=make_ops_logger(events.append),
    )
    (tmp_path / "keys" / "orders").write_text("")  # the Secret emptied under a running replica
    assert holder.reload() is False
    assert holder.runtime.settings.unavailable_keys() == () and "is empty" in (holder.last_error or "")


async def test_ready_gauge_follows_missing_keys(aiohttp_client: Any, tmp_path: Path) -> None:
    """gateway_authz_ready is 0 while a key is missing and 1 once it is loaded (what GatewayAuthzNotReady watches)."""
    path = _write_config(tmp_path, orders_primary={"file": "keys/orders"})
    decide, admin = await _clients(aiohttp_client, path)

    async def ready() -> str:
        async with admin.get("/metrics") as response:
            (line,) = [x for x in (await response.text()).splitlines() if x.startswith("gateway_authz_ready ")]
            return line

    assert await ready() == "gateway_authz_ready 0.0"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "orders").write_text(ORDERS_KEY)
    await decide.app[HOLDER_KEY].reload_in_thread()  # or the watcher (every 0.05 s) got there first
    assert decide.app[HOLDER_KEY].runtime.settings.unavailable_keys() == ()
    assert await ready() == "gateway_authz_ready 1.0"
