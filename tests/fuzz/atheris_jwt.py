"""Coverage-guided fuzzing of the JWT path with atheris: by hand, not part of the test run.

    pip install atheris                                   # 3.0.0 wheel for CPython 3.11
    python -m tests.fuzz.atheris_jwt -atheris_runs=200000 [corpus_dir]

The first input byte picks the harness of :mod:`fuzz.targets`:

    0  bearer_token + verify_jwt on the rest as Latin-1 text (fixed issuer and keys)
    1  the same on a valid token with the text spliced in
    2  a *genuinely* ES256-signed token over a fuzzed header and payload (split at the first 0x00 byte)
    3  decode_json + parse_jwk_set on the rest as bytes
    4  DecisionService.decide with the text as ``Authorization: Bearer …`` (JWT verification + Azure RBAC)

Without a corpus directory a temporary one is seeded with valid tokens, header/payload pairs and the JWKS.
"""

from __future__ import annotations

import json

from tests.fuzz._atheris_main import load_instrumented, run

load_instrumented()

from tests.fuzz import targets  # noqa: E402
from tests.fuzz import world as w  # noqa: E402
from tests.fuzz.strategies import VALID_JWT  # noqa: E402

WORLD = w.World()


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 5, data[1:]
    text = rest.decode("latin-1")
    if mode == 0:
        targets.jwt_credential(text)
    elif mode == 1:
        base = VALID_JWT[len(text) % len(VALID_JWT)]
        at = (rest[0] if rest else 0) * 7 % len(base)
        targets.jwt_credential(base[:at] + text[1:] + base[at + len(text[1:]) // 2 :])
    elif mode == 2:
        header, _, payload = rest.partition(b"\x00")
        targets.jwt_signed(header, payload, "ES256")
    elif mode == 3:
        targets.jwk_document(rest)
    else:
        targets.service_request(WORLD, w.request("/orders", headers=[("Authorization", "Bearer " + text)]))


def _seeds() -> list[bytes]:
    header = json.dumps({"typ": "JWT", "alg": "ES256", "kid": "ec-1"}).encode()
    claims = json.dumps(w.jwt_claims()).encode()
    return [
        *(bytes([mode]) + token.encode() for mode in (0, 1, 4) for token in VALID_JWT),
        bytes([2]) + header + b"\x00" + claims,
        bytes([3]) + json.dumps(w.JWKS).encode(),
    ]


if __name__ == "__main__":
    run(one_input, _seeds(), "jwt")
