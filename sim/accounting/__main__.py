"""``python -m sim.accounting build PATH`` (the same as ``repsys sim accounting build``)."""

from __future__ import annotations

import argparse
import sys

from sim.accounting.cli import add_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.accounting")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["accounting", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
