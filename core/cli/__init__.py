"""The ``backbone-lens`` command: the heavy batch work without a browser.

One module per group of commands, each with ``register(sub)`` adding its subcommands; this module
builds the parser from :data:`COMMANDS` and runs one command, turning every expected failure into one
line and exit status 2.
"""
from __future__ import annotations

import os
import sys

from core.cli import compare, concepts, data, discover, evaluate, saliency, why
from core.cli._common import Parser, validate
from core.errors import BackboneLensError
from core.io.heal import DISK_FULL_ERRNOS, disk_full
from core.io.paths import ENV_VAR

COMMANDS = (data, evaluate, compare, saliency, discover, why, concepts)  # modules with register(sub), in --help order


def build_parser() -> Parser:
    ap = Parser(prog="backbone-lens", description="Extract, cache and evaluate backbone features.")
    ap.add_argument("--cache", help=f"cache directory (default ${ENV_VAR}, else the user cache dir)")
    sub = ap.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return ap


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return "; ".join(lines) if lines else type(e).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (``warning: <file name>: Corrupt EXIF data``), no source line."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import sqlite3
    import warnings

    args = build_parser().parse_args(argv)
    old_show = warnings.showwarning
    old_cache = os.environ.get(ENV_VAR)
    warnings.showwarning = _show_warning
    try:
        validate(args)
        if args.cache:  # for this command only: main() called in-process must not move the caller's cache
            os.environ[ENV_VAR] = args.cache
        return args.func(args)
    except MemoryError:
        print("error: out of memory: try a smaller --batch-size or --size", file=sys.stderr)
        return 2
    except (BackboneLensError, OSError, ValueError, sqlite3.DatabaseError) as e:
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:  # one message for ENOSPC / EFBIG / EDQUOT
            e = disk_full(e.filename or "a file being written", cache=False)
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = old_show
        if old_cache is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old_cache
