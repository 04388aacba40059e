"""W3C Trace Context: the trace and parent span ids of a valid ``traceparent`` header, or nothing.

``version-traceid-parentid-flags``, lower-case hex: ``00-<32>-<16>-<2>``. An all-zero trace or span id, the
version ``ff``, upper-case hex or a wrong length make the header invalid, and an invalid header is ignored (never
an error: tracing must not change a decision). A future version may append fields after the flags (``-…``).
"""

from __future__ import annotations

__all__ = ["TRACEPARENT", "trace_ids"]

TRACEPARENT = "traceparent"
_HEX = frozenset("0123456789abcdef")
_MAX_LENGTH = 512  # longer than any version this reader understands could need: not read at all


def trace_ids(value: str) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` from a ``traceparent`` value, or ``None`` when it is not a valid one."""
    if len(value) < 55 or len(value) > _MAX_LENGTH:
        return None
    version, trace_id, span_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if not _HEX.issuperset(version + trace_id + span_id + flags) or version == "ff":
        return None
    if len(value) > 55 and (version == "00" or value[55] != "-"):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id
