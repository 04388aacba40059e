"""Azure Relay / Service Bus connection strings: ``Endpoint=sb://…/;SharedAccessKeyName=…;SharedAccessKey=…``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConnectionString", "parse_connection_string"]

_KNOWN = {
    "endpoint",
    "sharedaccesskeyname",
    "sharedaccesskey",
    "entitypath",
    "sharedaccesssignature",
    "operationtimeout",
    "authentication",
    "hostname",
}


@dataclass(frozen=True, slots=True)
class ConnectionString:
    endpoint: str
    key_name: str
    key: str
    entity_path: str | None = None

    def __repr__(self) -> str:  # the key never appears in a repr
        return f"ConnectionString(endpoint={self.endpoint!r}, key_name={self.key_name!r})"

    @property
    def resource(self) -> str:
        """The resource a token from this string is for: the entity when ``EntityPath`` is set, else the namespace."""
        base = self.endpoint.rstrip("/")
        return f"{base}/{self.entity_path}" if self.entity_path else base + "/"


def parse_connection_string(text: str) -> ConnectionString:
    """Parse the way the Azure SDKs do (case-insensitive names, ``HostName`` as an alias); raises ``ValueError``."""
    values: dict[str, str] = {}
    for part in text.strip().strip(";").split(";"):
        name, sep, value = part.partition("=")
        key = name.strip().lower()
        if not sep or key not in _KNOWN:
            raise ValueError(f"unknown or malformed connection string part {name.strip()!r}")
        if key in values:
            raise ValueError(f"{name.strip()} given twice")
        values[key] = value.strip()
    if "sharedaccesssignature" in values:
        raise ValueError("this connection string carries a ready-made SharedAccessSignature, not a key")
    endpoint = values.get("endpoint") or ("sb://" + values["hostname"] if "hostname" in values else "")
    if not endpoint.lower().startswith("sb://"):
        raise ValueError("Endpoint must be an sb:// URI")
    if not values.get("sharedaccesskeyname") or not values.get("sharedaccesskey"):
        raise ValueError("SharedAccessKeyName and SharedAccessKey are both required")
    return ConnectionString(
        endpoint, values["sharedaccesskeyname"], values["sharedaccesskey"], values.get("entitypath")
    )
