"""gateway-authz: external authorization for Envoy, NGINX and forward-auth proxies, with Azure Relay's model.

SAS tokens are checked against namespace and entity rules; bearer JWTs against an issuer's JWKS and Azure role
assignments. The public surface is the command line and the HTTP/gRPC contract; the names below are for tests
and embedding.
"""

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
    "create_admin_app",
    "create_app",
]
__version__ = "0.1.0"
