"""Coverage-guided fuzzing of the SAS path with atheris: by hand, not part of the test run.

    pip install atheris                                   # 3.0.0 wheel for CPython 3.11
    python -m tests.fuzz.atheris_sas -atheris_runs=200000 [corpus_dir]

The first input byte picks the harness of :mod:`fuzz.targets`; the rest, read as Latin-1 text (every byte one
character), is the input:

    0  parse_sas + verify_sas on the text                       3  parse_query on the text
    1  parse_sas on a valid token with the text spliced in       4  find_credential with the text in every carrier
    2  parse_sr and canonical_segments on the text              5  DecisionService.decide, text as the SAS header

Without a corpus directory a temporary one is seeded with the world's valid tokens. A crash or a broken property
stops the run with the input that caused it, as libFuzzer does; the harness iteration counts print at exit.
"""

from __future__ import annotations

from tests.fuzz._atheris_main import load_instrumented, run

load_instrumented()

from tests.fuzz import targets  # noqa: E402
from tests.fuzz import world as w  # noqa: E402
from tests.fuzz.strategies import VALID_SAS  # noqa: E402

WORLD = w.World()


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, text = data[0] % 6, data[1:].decode("latin-1")
    if mode == 0:
        targets.sas_token(text)
    elif mode == 1:
        base = VALID_SAS[len(text) % len(VALID_SAS)]
        at = (data[1] if len(data) > 1 else 0) % len(base)
        targets.sas_token(base[:at] + text[1:] + base[at + len(text[1:]) // 2 :])
    elif mode == 2:
        targets.sr(text)
        targets.path_segments(text)
    elif mode == 3:
        targets.query(text)
    elif mode == 4:
        targets.credential([("ServiceBusAuthorization", text), ("Authorization", text)], "sb-hc-token=" + text)
    else:
        targets.service_request(WORLD, w.request("/orders", headers=[("ServiceBusAuthorization", text)]))


if __name__ == "__main__":
    run(one_input, (bytes([mode]) + token.encode() for mode in range(6) for token in VALID_SAS[:4]), "sas")
