"""The audit log: one JSON line per decision on standard output, built by a small structlog pipeline.

Fields follow the contract (``timestamp``, ``event``, ``decision``, ``status``, ``reason``, ``auth``,
``principal``, ``right``, ``namespace``, ``entity``, ``method``, ``host``, ``path``, ``gateway``, ``request_id``,
``latency_ms``, ``decision_id``, ``trace_id``/``span_id`` from a valid ``traceparent``, plus
``key_name``/``key_slot`` for SAS and ``issuer``/``tenant``/``role``/``scope`` for JWT).
The path is logged with the ``sb-hc-token`` value removed, and a redaction step blanks anything that still looks
like a SAS signature or a JWT, so no key, signature or whole token reaches a log line.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import unquote, unquote_plus

import orjson
import structlog

from ..core.memo import BoundedMemo, IdentityMemo
from ..core.model import AuthzRequest, Decision
from ..core.traceparent import TRACEPARENT, trace_ids

__all__ = ["AuditLog", "make_ops_logger", "redact_target"]

Sink = Callable[[bytes], object]

_FLUSH_DELAY = 0.01  # seconds an audit line may wait on standard output
_FLUSH_BYTES = 64 * 1024  # or until this much is pending

_SECRETS = re.compile(
    r"(?i)(sig=)[^&\s\"]+|SharedAccessSignature\s+\S+|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)
# What a query value carrying a credential looks like once form-decoded (a SAS token, or still escaped once more).
_CREDENTIAL_NAMES = frozenset(("sb-hc-token", "sig"))
_CREDENTIAL_VALUE = re.compile(r"(?i)sig(?:=|%3d)|SharedAccessSignature|eyJ[A-Za-z0-9_-]{4,}\.")


def redact_target(target: str) -> str:
    """The request target as it may be logged, without credentials in its query.

    The value of ``sb-hc-token`` in any spelling a lenient reader would accept (``SB-HC-TOKEN``,
    ``sb%2Dhc%2Dtoken``) is removed, and so is any other query value that carries a token: a request the service
    refuses (or does not read the parameter of) still must not put the token into the log.
    """
    path, sep, query = target.partition("?")
    if not sep or not query:
        return target
    pairs = query.split("&")
    changed = False
    for i, pair in enumerate(pairs):
        name, eq, value = pair.partition("=")
        # "sig" too: a token put into the query without encoding splits at its own "&", leaving "sig=…" a pair
        if unquote(name).lower() in _CREDENTIAL_NAMES or _CREDENTIAL_VALUE.search(unquote_plus(value or name)):
            pairs[i] = f"{name}=[removed]" if eq else "[removed]"
            changed = True
    return f"{path}?{'&'.join(pairs)}" if changed else target


def _free_of_secret_markers(text: str) -> bool:
    """True when ``text`` holds none of "sig=", "sharedaccesssignature", "eyj" in any ASCII letter case."""
    lowered = text.lower()
    return "sig=" not in lowered and "sharedaccesssignature" not in lowered and "eyj" not in lowered


def _clean_ascii(*texts: str) -> bool:
    """True when no field could match :data:`_SECRETS` and none needs escaping: the fast test of :func:`_redact`."""
    text = "\0".join(texts)
    return text.isascii() and _free_of_secret_markers(text)


def _verbatim(text: str) -> bool:
    """True when JSON writes ``text`` as it is and redaction has nothing to look at in it.

    Printable ASCII needs escaping only for a quote or a backslash. Fields joined with a space cannot form a
    marker across a boundary (none holds one).
    """
    if not (text.isascii() and text.isprintable()) or '"' in text or "\\" in text:
        return False
    return _free_of_secret_markers(text)


def _plain_id(decision_id: str) -> bool:
    """True for an id that JSON writes as it is and redaction cannot match: letters, digits and hyphens only."""
    return decision_id.isascii() and decision_id.replace("-", "").isalnum() and len(decision_id) <= 64


def _redact(_logger: object, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Every match of _SECRETS holds "sig=", "sharedaccesssignature" or "eyj" in some letter case. When the event's
    # text is ASCII (where the pattern's case-insensitivity is plain ASCII case), a lower-cased scan for those
    # three is an exact test that no field can match, and costs a fraction of running the pattern on each field.
    # Non-ASCII text (where re's case folding also matches e.g. U+017F for "s") always takes the full path.
    text = "\0".join([value for value in event.values() if isinstance(value, str)])
    if text.isascii():
        if _free_of_secret_markers(text):
            return event
    else:
        _escape_invalid_utf8(event)
    for key, value in event.items():
        if isinstance(value, str) and ("sig=" in value or "." in value or "Signature" in value):
            event[key] = _SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", value)
    return event


def _escape_invalid_utf8(event: MutableMapping[str, Any]) -> None:
    """Backslash-escape every string that is not valid UTF-8.

    aiohttp hands header bytes that are not UTF-8 (an NGINX ``X-Original-URI`` or Host with a raw ``\\xff``, a
    client's ``x-request-id``) over as lone surrogates, which the JSON renderer refuses: the audit line would be
    lost and the request answered 500. Escaped, the line is written and shows the bytes that were sent.
    """
    for key, value in event.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                event[key] = _escaped(value)


def _escaped(value: str) -> str:
    try:  # the bytes that arrived (aiohttp's surrogate escapes), shown as \xff
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # any other lone surrogate, shown as \ud800
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


class _IsoTimeStamper:
    """``timestamp``: UTC ISO 8601 exactly as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it.

    The date and time of day are formatted once per second; each event adds only its microseconds (omitted when
    zero, as ``datetime.isoformat`` omits them).
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: object, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["timestamp"] = self.now()
        return event

    def now(self) -> str:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            stamp = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._prefix, self._second = stamp.strftime("%Y-%m-%dT%H:%M:%S"), second
        micros = nanos // 1000
        return f"{self._prefix}.{micros:06d}Z" if micros else f"{self._prefix}Z"


class _SinkLogger:
    """A structlog logger that hands each rendered line to a sink (stdout by default, a list in tests)."""

    __slots__ = ("_sink",)

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def msg(self, message: bytes) -> None:
        self._sink(message + b"\n")

    info = warning = error = msg


class _StdoutSink:
    """Standard output, written in batches rather than once per line.

    Lines wait at most ``_FLUSH_DELAY`` seconds (or until ``_FLUSH_BYTES`` are pending), then go out in one write.
    With the gateways' keep-alive connections each event-loop iteration tends to decide a single request, so
    flushing once per iteration still cost one system call per decision; a few milliseconds of buffering turn
    that into one per many. (Envoy buffers its own access log files for up to ten seconds.) Without a running
    loop a line is written at once, and whatever is pending is written at exit, including on SIGTERM.
    """

    __slots__ = ("_pending", "_pending_bytes", "_timer", "_timer_loop")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # the loop the timer runs on
        atexit.register(self.flush)

    def __call__(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending_bytes += len(line)
        if self._pending_bytes >= _FLUSH_BYTES:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no running loop
            self.flush()
            return
        if self._timer_loop is not loop:  # no timer yet, or one on a loop that has since ended
            self._timer = loop.call_later(_FLUSH_DELAY, self.flush)
            self._timer_loop = loop

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_loop = None
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()


_stdout_sink = _StdoutSink()


def _processors() -> list[Any]:
    """Redaction first (it must see every field), then the timestamp, then one JSON line."""
    return [_redact, _IsoTimeStamper(), structlog.processors.JSONRenderer(serializer=orjson.dumps)]


def _pipeline(sink: Sink) -> Any:
    # bind() once: what wrap_logger returns is a lazy proxy that would build a new bound logger on every call.
    return structlog.wrap_logger(_SinkLogger(sink), processors=_processors()).bind()


# The fields of a decision line in order; the request's own sit between the decision's first and last ones.
_REQUEST_FIELDS = ("method", "host", "path", "gateway", "request_id", "latency_ms")
_DECISION_FIELDS = ("decision", "status", "reason", "auth", "principal", "right", "namespace", "entity", "dry_run")
_TRACE_FIELDS = ("decision_id", "trace_id", "span_id")
_RESERVED = frozenset((*_DECISION_FIELDS, *_REQUEST_FIELDS, *_TRACE_FIELDS, "event", "timestamp"))
_RENDERED_DECISIONS = 1024  # distinct decision contents whose part of the line is kept rendered


class AuditLog:
    """Writes the one audit event of each decision.

    The event goes through the same structlog processors as the ops log (redaction, timestamp, orjson
    rendering), called directly: the line is byte for byte what ``logger.info("authz.decision", **fields)``
    would write, without a bound logger's per-call dispatch and event-dict copying on every decision.

    The fields that come from the decision recur (a cached decision answers again; every fresh token of one
    rule is decided alike), so they are rendered once per distinct content; each line then renders only the
    request's fields and the time. That shortcut is taken only when the processors would change nothing (every
    string ASCII and free of anything redaction looks for), so the bytes are the same either way.
    """

    __slots__ = ("_heads", "_processors", "_rendered", "_sink", "_stamper")

    def __init__(self, sink: Sink = _stdout_sink) -> None:
        self._sink = sink
        self._processors = _processors()
        self._stamper: _IsoTimeStamper = self._processors[1]
        # a decision's content -> (head, tail) of its line, or (None, "") when it cannot take the shortcut
        self._rendered: BoundedMemo[tuple[Any, ...], tuple[str | None, str]] = BoundedMemo(_RENDERED_DECISIONS)
        # the same with the request's fixed fields in the head, by (id(decision), method, host, target, gateway): a
        # cached decision answers again as the very same object, to the same request but for its id
        self._heads: IdentityMemo[tuple[str | None, str]] = IdentityMemo(_RENDERED_DECISIONS)

    def decision(self, request: AuthzRequest, decision: Decision, latency_ms: float, decision_id: str = "") -> None:
        trace = _trace(request)
        method, host, target, gateway, request_id = (
            request.method,
            request.host,
            request.target,
            request.gateway,
            request.request_id,
        )
        # The line but the request id, latency and time, found by the decision's identity and the request's fixed
        # fields: a gateway sends the same request again and again, and only those three differ.
        key = (id(decision), method, host, target, gateway)
        parts = self._heads.get(decision, key)
        if parts is None:
            parts = self._heads.put(decision, key, self._head(decision, method, host, target, gateway))
        head, tail = parts
        if head is not None and _verbatim(request_id) and _plain_id(decision_id):
            # Every field is printable ASCII without quote or backslash, which JSON writes as it is: the line is
            # the renderer's, byte for byte, with the request's fields and the time put in place. (The trace ids
            # are lower-case hex, checked by trace_ids.)
            latency = round(latency_ms, 3)
            traced = f'","trace_id":"{trace[0]}","span_id":"{trace[1]}' if trace is not None else ""
            self._sink(
                f'{head}{request_id}","decision_id":"{decision_id}{traced}","latency_ms":{latency!r}'
                f'{tail}{self._stamper.now()}"}}\n'.encode()
            )
            return
        self._line(request, decision, redact_target(target), latency_ms, decision_id, trace)

    def _head(self, decision: Decision, method: str, host: str, target: str, gateway: str) -> tuple[str | None, str]:
        """The rendered line up to the request id's value and after the latency; no head when it cannot be used."""
        head, tail = self._parts(decision)
        path = redact_target(target)
        if head is None or not _verbatim(f"{method} {host} {path} {gateway}"):
            return None, ""
        return f'{head}"method":"{method}","host":"{host}","path":"{path}","gateway":"{gateway}","request_id":"', tail

    def _parts(self, decision: Decision) -> tuple[str | None, str]:
        """The rendered line before and after the request's fields, from everything of ``decision`` it shows."""
        content = (
            decision.allowed,
            decision.dry_run,
            decision.status,
            decision.reason,
            decision.auth,
            decision.principal,
            decision.right,
            decision.namespace,
            decision.entity,
            *decision.audit.items(),
        )
        try:
            parts = self._rendered.get(content)
        except TypeError:  # an audit value that is not hashable: not a string either, so no shortcut
            return None, ""
        if parts is None:
            parts = self._rendered.put(content, _render_parts(decision))
        return parts

    def _line(
        self,
        request: AuthzRequest,
        decision: Decision,
        path: str,
        latency_ms: float,
        decision_id: str,
        trace: tuple[str, str] | None,
    ) -> None:
        event: Any = {
            "decision": "allow" if decision.allowed and not decision.dry_run else "deny",
            "status": decision.status,
            "reason": decision.reason,
            "auth": decision.auth,
            "principal": decision.principal,
            "right": decision.right.value if decision.right else "",
            "namespace": decision.namespace,
            "entity": decision.entity,
            "method": request.method,
            "host": request.host,
            "path": path,
            "gateway": request.gateway,
            "request_id": request.request_id,
            "decision_id": decision_id,
            **({"trace_id": trace[0], "span_id": trace[1]} if trace is not None else {}),
            "latency_ms": round(latency_ms, 3),
            "dry_run": decision.dry_run,
            **decision.audit,
            "event": "authz.decision",
        }
        for processor in self._processors:
            event = processor(None, "info", event)
        self._sink(event + b"\n")


def _trace(request: AuthzRequest) -> tuple[str, str] | None:
    """The trace and span id of the request's one valid ``traceparent``; none for an absent, repeated or bad one."""
    headers = request.headers
    if TRACEPARENT not in headers:
        return None
    values = headers.get(TRACEPARENT, ())
    return trace_ids(values[0]) if len(values) == 1 else None


def _render_parts(decision: Decision) -> tuple[str | None, str]:
    """The rendered JSON before and after the request's fields, or no head when the shortcut does not apply."""
    audit = dict(decision.audit)
    head = {
        "decision": "allow" if decision.allowed and not decision.dry_run else "deny",
        "status": decision.status,
        "reason": decision.reason,
        "auth": decision.auth,
        "principal": decision.principal,
        "right": decision.right.value if decision.right else "",
        "namespace": decision.namespace,
        "entity": decision.entity,
    }
    tail = {"dry_run": decision.dry_run, **audit, "event": "authz.decision"}
    texts = [v for v in (*head.values(), *tail.values()) if isinstance(v, str)]
    if _RESERVED.intersection(audit) or not all(isinstance(v, str) for v in audit.values()) or not _clean_ascii(*texts):
        return (None, "")  # rendered field by field, through the processors, every time
    return (orjson.dumps(head)[:-1].decode() + ",", "," + orjson.dumps(tail)[1:-1].decode() + ',"timestamp":"')


def make_ops_logger(sink: Sink | None = None) -> Any:
    """The operations log (reloads, key fetches): JSON lines on standard error."""

    def _stderr(line: bytes) -> None:
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()

    return _pipeline(sink or _stderr)
