"""What this build is: the package version (from its installed metadata, pyproject being the one source) and the
versions of the runtime it runs on, for ``--version``, the ``service.start`` line and ``gateway_authz_build_info``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

__all__ = ["BuildInfo", "build_info", "package_version"]

_DISTRIBUTION = "gateway-authz"


def package_version() -> str:
    """The installed distribution's version; ``0+unknown`` when the package runs from a tree that was not installed."""
    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    python: str
    aiohttp: str

    def labels(self) -> dict[str, str]:
        return {"version": self.version, "python": self.python, "aiohttp": self.aiohttp}


def build_info() -> BuildInfo:
    """This process's versions: gateway-authz, the Python implementation's, aiohttp's."""
    try:
        aiohttp_version = metadata.version("aiohttp")
    except metadata.PackageNotFoundError:
        aiohttp_version = "unknown"
    return BuildInfo(version=package_version(), python=platform.python_version(), aiohttp=aiohttp_version)
