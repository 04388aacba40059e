"""One exception tree for every way a request can fail to be allowed.

::

    AuthzError                      the root; never raised itself
     ├── BadRequest          400    the request itself is ambiguous or malformed (a path an upstream could read as
     │                              another resource, a method that is not a token): decided as nothing at all
     ├── InvalidCredential   401    missing, malformed, bad signature, expired, unknown key name or issuer
     ├── NotPermitted        403    valid credential (or none needed) but no right on that resource
     └── CannotVerify        503    the service could not decide (keys unavailable, internal fault)

    ConfigError                     a configuration that must not be used; lists every problem with its location

Each :class:`AuthzError` carries a short, stable ``reason`` code (``bad_signature``, ``token_scope`` …) that
goes into the deny body, the audit log and the metrics, and an optional ``detail`` for the audit log only.
Neither ever contains key material or a whole token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "AuthzError",
    "BadRequest",
    "CannotVerify",
    "ConfigError",
    "ConfigProblem",
    "InvalidCredential",
    "NotPermitted",
]


class AuthzError(Exception):
    """Root of the decision errors; ``status`` is the HTTP status a gateway must answer with."""

    status: ClassVar[int] = 503
    message: ClassVar[str] = "authorization failed"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class BadRequest(AuthzError):
    """A request the service refuses to decide at all, whatever its credential: 400.

    Used where deciding it as one resource would be a guess another reader of the same bytes could contradict.
    """

    status = 400
    message = "the request is malformed or ambiguous"


class InvalidCredential(AuthzError):
    """No usable credential: answered with 401 and ``WWW-Authenticate``."""

    status = 401
    message = "a valid credential is required"


class NotPermitted(AuthzError):
    """The credential is valid (or none was needed) but does not grant the right on the resource: 403."""

    status = 403
    message = "the credential does not grant this right on this resource"


class CannotVerify(AuthzError):
    """The service could not reach a decision (for example, no signing keys could be had): 503."""

    status = 503
    message = "the authorization service could not verify the request"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration file, at a location such as ``namespaces[0].authorizationRules[2].rights``."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(Exception):
    """A configuration that must not be used; ``problems`` lists every one found, not just the first."""

    def __init__(self, problems: list[ConfigProblem] | tuple[ConfigProblem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid configuration")
