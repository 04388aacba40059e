"""Summarise a py-spy ``--format raw`` profile (what ``bench.py --profile`` writes): where the samples fall.

    python -m tests.perf.fold PROFILE [--under "fast_decision_handler"] [--top 30]

Prints the share of samples per function, self (the frame on top of the stack) and inclusive (anywhere on it),
with line numbers dropped so that one function is one row. ``--under`` keeps only the samples whose stack
passes through a frame containing that text, and measures shares within them.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def summarise(path: Path, under: str | None) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if under is not None:
            hits = [i for i, frame in enumerate(frames) if under in frame]
            if not hits:
                continue
            frames = frames[hits[-1] :]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, own, inclusive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under", default=None, help="only samples passing through a frame containing this")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    total, own, inclusive = summarise(args.profile, args.under)
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples" + (f" under {args.under!r}" if args.under else ""))
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"--- {title}")
        for frame, n in counter.most_common(args.top):
            print(f"{n / total:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
