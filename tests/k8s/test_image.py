"""The container image. Where a Docker daemon answers, the image is built and run (``--version``, then ``serve``
until ``/readyz`` answers 200 on a read-only root filesystem). This machine and CI have no daemon, so the
Dockerfile is also checked statically: pinned base, the lock with uvloop, the default config from the package,
non-root, nothing written at run time, and a CMD the command line accepts as the manifests expect.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from gateway_authz.cli.main import _parser
from gateway_authz.cli.serve import serve_options
from gateway_authz.config.default import default_config
from gateway_authz.core.build_info import package_version

from .test_manifests import REPO, SERVE_ARGS

DOCKERFILE = (REPO / "Dockerfile").read_text()
DIGEST = re.compile(r"^FROM (python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64})(?: AS \w+)?$", re.MULTILINE)


def test_base_image_is_pinned_by_exact_tag_and_digest() -> None:
    froms = re.findall(r"^FROM .*$", DOCKERFILE, flags=re.MULTILINE)
    pinned = DIGEST.findall(DOCKERFILE)
    assert len(froms) == 2 and len(pinned) == 2 and pinned[0] == pinned[1], froms


def test_the_lock_the_image_installs_carries_uvloop() -> None:
    assert re.search(r"^uvloop==\d", (REPO / "requirements" / "service.txt").read_text(), flags=re.MULTILINE)


def test_default_config_comes_from_the_package_not_a_copy() -> None:
    assert "COPY config" not in DOCKERFILE and "COPY gateway_authz ./gateway_authz" in DOCKERFILE
    assert default_config().endswith("gateway_authz/config/gateway-authz.yaml")


def test_runtime_stage_writes_nothing_and_runs_non_root() -> None:
    runtime = DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]
    after_user = runtime[runtime.index("\nUSER ") :]
    assert "\nRUN " not in after_user  # nothing installed or written as the service's user
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime  # no __pycache__ on a read-only root filesystem
    (user,) = re.findall(r"^USER\s+(\d+):(\d+)$", runtime, flags=re.MULTILINE)
    assert user[0] != "0" and user[1] != "0"


def test_cmd_serves_the_packaged_config_on_every_address() -> None:
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])", DOCKERFILE, flags=re.MULTILINE)
    argv = json.loads(cmd)
    assert argv == SERVE_ARGS
    options = serve_options(_parser().parse_args(argv), {}, default_config)
    assert (options.host, options.admin_host, options.config_path) == ("0.0.0.0", "0.0.0.0", default_config())  # noqa: S104


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.fail("`pytest -m image` needs a Docker daemon (and its registry, for the pinned base image)")
    return docker


# Not in the default run (pyproject's addopts deselect the `image` marker): building needs a Docker daemon and
# Docker Hub, which neither developers' machines nor CI here have. Run it with `pytest -m image` where they are.
@pytest.mark.image
def test_image_builds_prints_its_version_and_becomes_ready() -> None:
    docker = _docker()
    tag = f"gateway-authz-test:{package_version()}"
    subprocess.run([docker, "build", "-t", tag, str(REPO)], check=True, timeout=1800)
    version = subprocess.run([docker, "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=120)
    assert version.stdout == f"gateway-authz {package_version()}\n"
    started = subprocess.run(
        [docker, "run", "-d", "--rm", "--read-only", "-p", "127.0.0.1::8081", tag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    container = started.stdout.strip()
    try:
        port = subprocess.run([docker, "port", container, "8081"], capture_output=True, text=True, timeout=30).stdout
        url = f"http://{port.strip().splitlines()[0]}/readyz"
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        subprocess.run([docker, "stop", container], capture_output=True, timeout=60)
