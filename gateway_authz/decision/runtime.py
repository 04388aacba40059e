"""One configuration compiled for serving: the SAS policy, the role-assignment index and the decision cache.

A :class:`Runtime` is built whole from a :class:`~gateway_authz.core.settings.Settings` and never changed; the
configuration holder (:mod:`gateway_authz.config.reload`) swaps in a new one when the configuration changes, which
also drops the decision cache that belongs to the old one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.settings import Settings
from ..entra.rbac import RbacPolicy
from ..sas.policy import CompiledPolicy
from .cache import DecisionCache

__all__ = ["Runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """One configuration compiled for serving, with the decision cache that belongs to it."""

    settings: Settings
    policy: CompiledPolicy
    rbac: RbacPolicy
    cache: DecisionCache
    loaded_at: float

    @classmethod
    def build(
        cls, settings: Settings, *, clock: Callable[[], float] = time.time, previous: Runtime | None = None
    ) -> Runtime:
        """Compile ``settings``; what is unchanged since ``previous`` (the very same objects) is reused from it."""
        cache = settings.cache
        rbac = None
        if previous is not None:
            before = previous.settings
            same_roles = before.role_definitions is settings.role_definitions
            if same_roles and before.role_assignments is settings.role_assignments:
                rbac = previous.rbac
        return cls(
            settings=settings,
            policy=CompiledPolicy(settings, previous=previous.policy if previous is not None else None),
            rbac=rbac or RbacPolicy.from_settings(settings),
            cache=DecisionCache(maxsize=cache.decision_max_entries, ttl=cache.decision_ttl_seconds, clock=clock),
            loaded_at=clock(),
        )
