"""``gateway-authz config import --out DIR [--secrets-dir DIR] FILE...``: saved Azure CLI output to a config directory.

Exit 0 on success, 1 when an input is invalid or not recognised, 2 on bad arguments. Keys go to their own files
under ``--secrets-dir`` (default ``DIR/secrets``), mode 0600, and are never printed. What was skipped is counted
on standard error, with a warning for each assignment that needs a human's look (conditions, foreign groups).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

_MAX_INPUT_BYTES = 256 * 1024 * 1024


def add_parser(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "import",
        help="turn saved Azure CLI JSON output into a configuration directory",
        description="Read saved az ... -o json output (namespaces, hybrid connections, WCF relays, authorization "
        "rules and their keys, role assignments and definitions), recognised by content, and write a "
        "configuration directory: one file per namespace, roles.yaml, role-assignments-NNN.yaml, and each key in "
        "its own 0600 file referenced with {file: ...}. Exit 0 on success, 1 when an input is invalid or not "
        "recognised, 2 on bad arguments.",
    )
    parser.add_argument("--out", required=True, help="the configuration directory to write")
    parser.add_argument("--secrets-dir", default=None, help="where each key goes, one 0600 file each (DIR/secrets)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="saved az ... -o json outputs")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config.azure_import import InvalidInput, convert

    out = Path(args.out)
    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else out / "secrets"
    try:
        prefix = os.path.relpath(secrets_dir.resolve(), out.resolve())
    except ValueError:
        prefix = str(secrets_dir.resolve())
    if prefix.startswith(".."):
        prefix = str(secrets_dir.resolve())
    documents = []
    try:
        for name in args.files:
            with open(name, "rb") as handle:
                data = handle.read(_MAX_INPUT_BYTES + 1)
            if len(data) > _MAX_INPUT_BYTES:
                raise InvalidInput(f"{name}: larger than {_MAX_INPUT_BYTES} bytes")
            try:
                documents.append((name, json.loads(data)))
            except ValueError:
                raise InvalidInput(f"{name}: not JSON (save it with `az ... -o json`)") from None
        result = convert(documents, secrets_prefix=prefix)
    except OSError as exc:
        print(f"gateway-authz: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except InvalidInput as exc:
        print(f"gateway-authz: {exc}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(result.files.items()):
        (out / name).write_text(text, encoding="utf-8")
    for name, key in sorted(result.secrets.items()):
        _write_secret(secrets_dir / name, key)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for why, count in sorted(result.skipped.items()):
        print(f"skipped {count}: {why}", file=sys.stderr)
    print(f"wrote {len(result.files)} files to {out} and {len(result.secrets)} keys to {secrets_dir}")
    return 0


def _write_secret(path: Path, key: str) -> None:
    """One key, mode 0600 from the moment it exists (and set again if the file was there before)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(key)
