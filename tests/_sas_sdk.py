"""SAS tokens minted by the official Azure SDK's own signing code, for tests.

The service must accept what real clients send, so tests do not sign tokens with code of our own: they call
``azure.servicebus._pyamqp.utils.generate_sas_token`` (azure-servicebus is a test dependency), which is what the
Python SDK uses on the wire. The helpers here only pick the arguments and take the token apart for assertions.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pytest

__all__ = ["MintedToken", "mint_sas"]


@dataclass(frozen=True)
class MintedToken:
    """A token and the pieces that must never show up in a log: the signature in all its spellings."""

    token: str
    resource: str
    key_name: str
    expiry: int

    @property
    def fields(self) -> dict[str, str]:
        """The raw (still percent-encoded) ``name=value`` fields after the ``SharedAccessSignature `` prefix."""
        body = self.token.removeprefix("SharedAccessSignature ")
        return dict(part.split("=", 1) for part in body.split("&"))

    @property
    def signature_forms(self) -> tuple[str, ...]:
        """The base64 signature as signed, as it appears in the token, and as it appears in a query string."""
        encoded = self.fields["sig"]
        raw = unquote(encoded)
        assert len(base64.b64decode(raw)) == 32
        return (raw, encoded, quote(encoded, safe=""))

    @property
    def query_value(self) -> str:
        """The token percent-encoded for ``?sb-hc-token=``, as the Relay SDKs put it in a URL."""
        return quote(self.token, safe="")


def mint_sas(resource: str, key_name: str, key: str, *, ttl: int = 3600, now: float | None = None) -> MintedToken:
    """``SharedAccessSignature sr=…&sig=…&se=…&skn=…`` signed by the Azure SDK; ``ttl`` < 0 gives an expired one."""
    try:
        from azure.servicebus._pyamqp.utils import generate_sas_token
    except ImportError as exc:
        pytest.fail(f"azure-servicebus is a test dependency and must be installed: {exc}", pytrace=False)
    expiry = int(now if now is not None else time.time()) + ttl
    if expiry <= 0:  # the SDK treats a falsy expiry as "one hour from now"
        raise ValueError("expiry must be a positive Unix time")
    token: str = generate_sas_token(resource, key_name, key, expiry)  # type: ignore[no-untyped-call]
    return MintedToken(token=token, resource=resource, key_name=key_name, expiry=expiry)
