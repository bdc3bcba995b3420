"""The `medswitch` console command: one entry point for operators and staff.

Each subcommand lives in its own module under `switch.commands` and is
imported only when used, so `medswitch adjudicate` starts without loading
gRPC or asyncpg.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> module; each module has add_parser(subparsers) that sets `func`
# (a callable taking the parsed arguments and returning the exit code).
COMMANDS: dict[str, str] = {
    "adjudicate": "switch.commands.adjudicate",
    "db": "switch.commands.db",
    "import-reference": "switch.commands.import_reference",
    "ledger": "switch.commands.ledger",
    "pki": "switch.commands.pki",
    "serve": "switch.commands.serve",
    "day": "switch.commands.day",
    "payouts": "switch.commands.payouts",
    "recon": "switch.commands.recon",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medswitch",
        description="MedSwitch: settlement switch and claims adjudication.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module_name in COMMANDS.items():
        # Load only the module asked for (and all of them for --help), so a
        # missing optional part never breaks the others.
        if wanted is not None and wanted in COMMANDS and name != wanted:
            sub.add_parser(name)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"{args.command}: not available in this build")
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
