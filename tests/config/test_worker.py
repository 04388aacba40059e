"""The directory reader's child process (config/_worker.py): same configuration as the in-process loader, only
changed files cross the pipe, the parent keeps the objects of unchanged files, and the child is stopped."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_authz.config._worker import WorkerLoader
from gateway_authz.config.loader import load_settings
from gateway_authz.core.errors import ConfigError
from tests.config.test_directory import KEY_B, estate, namespace, write

JWKS = {"keys": [{"kty": "RSA", "kid": "k1", "n": "sXch", "e": "AQAB"}]}


@pytest.fixture
def worker() -> Iterator[WorkerLoader]:
    loader = WorkerLoader(environ={})
    yield loader
    loader.close()


def test_the_child_reads_what_the_in_process_loader_reads(tmp_path: Path, worker: WorkerLoader) -> None:
    estate(tmp_path, 5)
    issuer = {"issuer": "https://issuer.example/", "audiences": ["api"], "jwks": JWKS}
    write(tmp_path, "identity.yaml", {"identity": {"issuers": [issuer]}})
    expected = load_settings(tmp_path, environ={})
    got = worker(str(tmp_path))
    assert got.fingerprint == expected.fingerprint
    assert got.namespaces == expected.namespaces
    assert dict(got.identity.issuers[0].jwks or {}) == JWKS  # a read-only mapping survives the pipe


def test_a_change_sends_one_file_and_the_rest_stay_the_same_objects(tmp_path: Path, worker: WorkerLoader) -> None:
    estate(tmp_path, 6)
    first = worker(str(tmp_path))
    assert worker(str(tmp_path)) is first
    write(tmp_path, "ns002.yaml", {"namespaces": [namespace("ns002-relay", key=KEY_B)]})
    second = worker(str(tmp_path))
    assert second.namespaces[2].rules[0].primary_key == KEY_B
    kept = [a is b for a, b in zip(first.namespaces, second.namespaces, strict=True)]
    assert kept == [True, True, False, True, True, True]


def test_a_broken_file_is_an_error_and_the_fix_is_picked_up(tmp_path: Path, worker: WorkerLoader) -> None:
    estate(tmp_path, 3)
    worker(str(tmp_path))
    write(tmp_path, "ns001.yaml", "namespaces: [\n")
    with pytest.raises(ConfigError) as caught:
        worker(str(tmp_path))
    assert str(caught.value.problems[0]).startswith("ns001.yaml: line ")
    write(tmp_path, "ns001.yaml", json.dumps({"namespaces": [namespace("ns001-relay")]}))
    assert len(worker(str(tmp_path)).namespaces) == 3


def test_started_from_a_load_it_sends_nothing_already_known(tmp_path: Path) -> None:
    estate(tmp_path, 4)
    settings = load_settings(tmp_path, environ={})
    loader = WorkerLoader(start=settings, environ={})
    try:
        assert loader(str(tmp_path)) is settings
    finally:
        loader.close()


def test_close_stops_the_child_and_a_dead_child_is_replaced(tmp_path: Path, worker: WorkerLoader) -> None:
    estate(tmp_path, 2)
    first = worker(str(tmp_path))
    process = worker._process
    assert process is not None and process.is_alive()
    process.kill()
    process.join(timeout=10)
    assert worker(str(tmp_path)).fingerprint == first.fingerprint  # a new child, told what is known
    replacement = worker._process
    worker.close()
    assert not replacement.is_alive()


def test_the_child_reads_at_a_lower_priority_than_the_service(tmp_path: Path, worker: WorkerLoader) -> None:
    """Reading is background work: on a node with few CPUs the kernel runs the decisions first."""
    estate(tmp_path, 2)
    worker(str(tmp_path))  # answered: the child is past its start-up, where it lowers its priority
    (child,) = [p for p in multiprocessing.active_children() if p.name == "gateway-authz-config-reader"]
    assert child.pid is not None
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
