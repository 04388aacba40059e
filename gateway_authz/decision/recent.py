"""The last denies, for the status page: a bounded ring of what a person needs to find one, never a credential."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..core.model import AuthzRequest, Decision
from .audit import redact_target

__all__ = ["DenyRecord", "RecentDenies"]

_KEEP = 100
_FIELD_MAX = 512  # a host or path longer than this is cut: the page shows it, it does not need all of it


@dataclass(frozen=True, slots=True)
class DenyRecord:
    """One deny as the status page shows it; ``path`` has its credentials removed."""

    at: float
    status: int
    reason: str
    method: str
    host: str
    path: str
    gateway: str
    namespace: str
    decision_id: str
    dry_run: bool


class RecentDenies:
    """The last ``keep`` denies, newest last; adding one costs a record and a deque append."""

    __slots__ = ("_clock", "_records")

    def __init__(self, keep: int = _KEEP, *, clock: Callable[[], float] = time.time) -> None:
        self._records: deque[DenyRecord] = deque(maxlen=keep)
        self._clock = clock

    def add(self, request: AuthzRequest, decision: Decision, decision_id: str) -> None:
        self._records.append(
            DenyRecord(
                at=self._clock(),
                status=decision.status,
                reason=decision.reason,
                method=request.method[:_FIELD_MAX],
                host=request.host[:_FIELD_MAX],
                path=redact_target(request.target)[:_FIELD_MAX],
                gateway=request.gateway,
                namespace=decision.namespace,
                decision_id=decision_id,
                dry_run=decision.dry_run,
            )
        )

    def snapshot(self) -> tuple[DenyRecord, ...]:
        """Every deny kept, newest first."""
        return tuple(reversed(self._records))
