"""Redaction: the one function every logged value a client controls goes through before it is written.

Case-insensitive and encoding-aware: a SAS signature (``sig=…``), a whole ``SharedAccessSignature …`` token, a
``SharedAccessKey=…`` and a JWT are blanked whether they arrive raw, percent-encoded once (``sig%3D…``,
``SharedAccessSignature%20sr%3D…``) or twice (``sig%253D…``), in any letter case. What is encoded in a way the
pattern does not read in place (letters escaped too) is found in the decoded text and redacted there: the logged
value is then the decoded one, which is still free of the secret.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["REDACTED", "has_secret_marker", "redact"]

REDACTED = "[redacted]"

# Every secret the pattern below blanks contains one of these, lower-cased, in the text or in the text decoded once
# or twice: the cheap test that lets clean text through without running the pattern. ("sharedaccesskey" alone would
# match every rule named RootManageSharedAccessKey: only the connection-string field "SharedAccessKey=" holds a key.)
_MARKERS = ("sig=", "sharedaccesssignature", "sharedaccesskey=", "eyj")
_EQ = r"(?:=|%3d|%253d)"
_SPACE = r"(?:\s|\+|%20|%2520|%2b|%252b)+"
_SECRETS = re.compile(
    rf"(?ai)(sig{_EQ}|sharedaccesskey{_EQ})(?!\[redacted\])[^&;\s\"]+"
    rf"|sharedaccesssignature{_SPACE}(?!\[redacted\])[^\s\"]+"
    r"|eyJ[A-Za-z0-9_-]{4,}(?:\.|%2e|%252e)[A-Za-z0-9_-]+(?:\.|%2e|%252e)[A-Za-z0-9_-]*"
)
_DECODINGS = 2  # raw, percent-encoded once, percent-encoded twice


def _marked(lowered: str) -> bool:
    return any(marker in lowered for marker in _MARKERS)


def has_secret_marker(text: str) -> bool:
    """Whether ``text``, raw or percent-decoded once or twice, holds anything :func:`redact` looks for."""
    lowered = text.lower()
    if _marked(lowered):
        return True
    for _ in range(_DECODINGS):
        if "%" not in lowered:
            return False
        lowered = unquote(lowered)
        if _marked(lowered):
            return True
    return False


def _blank(match: re.Match[str]) -> str:
    return (match.group(1) or "") + REDACTED


def redact(text: str) -> str:
    """``text`` with every signature, SAS token, shared access key and JWT replaced by ``[redacted]``.

    Returns ``text`` itself when it holds nothing to redact (the usual case, tested without the pattern).
    """
    if not has_secret_marker(text):
        return text
    redacted = _SECRETS.sub(_blank, text)
    for _ in range(_DECODINGS):  # a secret only the decoded text shows: redact that text instead
        if "%" not in redacted:
            break
        decoded = unquote(redacted)
        if decoded == redacted or not _SECRETS.search(decoded):
            break
        redacted = _SECRETS.sub(_blank, decoded)
    return redacted
