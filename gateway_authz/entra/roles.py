"""The Azure built-in Relay roles, with their real role definition ids and permissions.

Source: Azure built-in roles reference (integration category). Listener and Sender also read hybrid connections
and WCF relays (control-plane ``read``); Owner holds ``Microsoft.Relay/*`` in both planes.
"""

from __future__ import annotations

from ..core.settings import RoleDefinition

__all__ = ["AZURE_RELAY_LISTENER", "AZURE_RELAY_OWNER", "AZURE_RELAY_SENDER", "BUILTIN_ROLES"]

AZURE_RELAY_OWNER = RoleDefinition(
    role_name="Azure Relay Owner",
    id="2787bf04-f1f5-4bfe-8383-c8a24483ee38",
    actions=("Microsoft.Relay/*",),
    data_actions=("Microsoft.Relay/*",),
)
AZURE_RELAY_LISTENER = RoleDefinition(
    role_name="Azure Relay Listener",
    id="26e0b698-aa6d-4085-9386-aadae190014d",
    actions=("Microsoft.Relay/*/wcfRelays/read", "Microsoft.Relay/*/hybridConnections/read"),
    data_actions=("Microsoft.Relay/*/listen/action",),
)
AZURE_RELAY_SENDER = RoleDefinition(
    role_name="Azure Relay Sender",
    id="26baccc8-eea7-41f1-98f4-1762cc7f685d",
    actions=("Microsoft.Relay/*/wcfRelays/read", "Microsoft.Relay/*/hybridConnections/read"),
    data_actions=("Microsoft.Relay/*/send/action",),
)
BUILTIN_ROLES: tuple[RoleDefinition, ...] = (AZURE_RELAY_OWNER, AZURE_RELAY_LISTENER, AZURE_RELAY_SENDER)
