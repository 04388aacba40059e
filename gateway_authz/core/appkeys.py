"""Typed keys for what the aiohttp applications share; no module-level state anywhere else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..config.reload import ConfigHolder
    from ..decision.service import DecisionService
    from ..entra.authorizer import EntraAuthorizer
    from .metrics import Metrics

__all__ = ["FAST_PATH", "HOLDER", "JWT", "METRICS", "SERVICE"]

SERVICE: web.AppKey[DecisionService] = web.AppKey("service")
HOLDER: web.AppKey[ConfigHolder] = web.AppKey("holder")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
JWT: web.AppKey[EntraAuthorizer] = web.AppKey("jwt")
# Whether the decision listener answers through aiohttp's private fast path (``http.fastpath``) or its public one.
FAST_PATH: web.AppKey[bool] = web.AppKey("fast_path")
