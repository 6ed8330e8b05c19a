"""`jumpstarter-lab`: run and check exporters, open a shell with an exporter, call drivers.

Errors print one line naming what was wrong and exit non-zero; no tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..wire.errors import JumpstarterLabError
from . import client, controller, exporter


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jumpstarter-lab")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jumpstarter-lab", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command_name", required=True)
    exporter.add_parsers(sub)
    client.add_parsers(sub)
    controller.add_parsers(sub)
    completion = sub.add_parser("completion", help="print a shell completion script, e.g. "
                                                   "`jumpstarter-lab completion bash > /etc/bash_completion.d/jumpstarter-lab`")
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    completion.set_defaults(func=lambda args: _completion(parser, args.shell))
    return parser


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    import shtab

    print(shtab.complete(parser, shell=shell))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grpc").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except JumpstarterLabError as e:
        print(f"jumpstarter-lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `jumpstarter-lab tree | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
