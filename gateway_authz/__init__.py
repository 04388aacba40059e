"""gateway-authz: external authorization for Envoy, NGINX and forward-auth proxies, with Azure Relay's model.

SAS tokens are checked against namespace and entity rules; bearer JWTs against an issuer's JWKS and Azure role
assignments. The public surface is the command line and the HTTP/gRPC contract; the names below are for tests
and embedding.
"""

from importlib.metadata import PackageNotFoundError, version

from .core.errors import AuthzError, CannotVerify, ConfigError, InvalidCredential, NotPermitted
from .core.model import AuthzRequest, Decision, Right
from .http.app import create_admin_app, create_app

__all__ = [
    "AuthzError",
    "AuthzRequest",
    "CannotVerify",
    "ConfigError",
    "Decision",
    "InvalidCredential",
    "NotPermitted",
    "Right",
    "__version__",
    "create_admin_app",
    "create_app",
]

try:  # the version lives in pyproject.toml alone; an installed copy knows it from its metadata
    __version__ = version("gateway-authz")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree that was never installed
    __version__ = "0+unknown"
