"""The default configuration shipped inside the package (package data), used by ``serve`` without ``--config``.

It lives beside this module so that every install carries it, editable or not; the repository's
``config/gateway-authz.yaml`` is a symbolic link to it, the path the README's quick start names.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["DEFAULT_CONFIG_NAME", "default_config"]

DEFAULT_CONFIG_NAME = "gateway-authz.yaml"


def default_config() -> str:
    """The path of the shipped default configuration file (a regular file in any installed package)."""
    return str(resources.files(__package__) / DEFAULT_CONFIG_NAME)
