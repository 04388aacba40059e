"""Gateway adapters: each turns one gateway's wire format into an :class:`~gateway_authz.core.model.AuthzRequest`
and a :class:`~gateway_authz.core.model.Decision` back into that wire format, and does nothing else."""
