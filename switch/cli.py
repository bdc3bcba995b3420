"""The `medswitch` console command: one entry point for operators and staff.

Each subcommand lives in its own module under `switch.commands` and is
imported only when used, so `medswitch adjudicate` starts without loading
gRPC or asyncpg.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


# Configuration options every command accepts, anywhere on the line: each
# sets its environment variable (docs/operations.md: "driven by the environment
# or the matching option"), which the commands then read as usual.
CONFIG_OPTIONS: dict[str, str] = {
    "--data-dir": "MEDSWITCH_DATA_DIR",
    "--database-url": "MEDSWITCH_DATABASE_URL",
    "--tls-dir": "MEDSWITCH_TLS_DIR",
    "--first-day": "MEDSWITCH_FIRST_DAY",
}


def take_config_options(argv: list[str]) -> list[str]:
    """Apply the configuration options to the environment; the rest of argv."""
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--":  # the end of options: the rest is the command's own
            rest.extend(argv[i:])
            break
        name, eq, value = argv[i].partition("=")
        if name in CONFIG_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"medswitch: {name} needs a value")
                i += 1
                value = argv[i]
            os.environ[CONFIG_OPTIONS[name]] = value
        else:
            rest.append(argv[i])
        i += 1
    return rest


def _operator_error(exc: BaseException) -> tuple[int, str] | None:
    """A mistake in the setup, told in one line instead of a traceback (None: a bug)."""
    kind = type(exc).__name__
    if kind == "ClientConfigurationError" or kind == "InvalidCatalogNameError":
        return 2, f"the database URL or name is not usable: {exc}"
    if kind == "KeyError_":
        return 2, f"data key: {exc}"
    if kind == "ConfigError":
        return 2, str(exc)
    if kind in ("SchemaTooNew", "SchemaDiverged"):  # ledger.db's SchemaMismatch
        return 1, f"database: {exc}"
    if isinstance(exc, OSError) or kind in ("ConnectionDoesNotExistError", "CannotConnectNowError"):
        return 1, f"{exc} (is the database reachable, the address free?)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = take_config_options(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(args_list)
    parser.epilog = "configuration, before or after COMMAND: " + ", ".join(
        f"{option} (= {env})" for option, env in CONFIG_OPTIONS.items()
    )
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.error(f"{args.command}: not available in this build")
    try:
        code: int = func(args)
    except Exception as exc:
        told = _operator_error(exc)
        if told is None:
            raise
        print(f"medswitch {args.command}: {told[1]}", file=sys.stderr)
        return told[0]
    return code


if __name__ == "__main__":
    sys.exit(main())
