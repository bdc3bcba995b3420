"""`medswitch pki init|issue`: the switch's CA and the institutions' certificates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from switch import pki
from switch.config import Settings


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("pki", help="create the CA and issue client certificates")
    parser.add_argument("--tls-dir", type=Path, help="default $MEDSWITCH_TLS_DIR")
    sub = parser.add_subparsers(dest="pki_command", required=True)
    init = sub.add_parser("init", help="create the CA and the server certificate")
    init.add_argument(
        "--host",
        action="append",
        default=[],
        help="extra server name or IP for the certificate (repeatable)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    issue = sub.add_parser("issue", help="issue clients/CODE.crt and .key for an institution")
    issue.add_argument("code", help="institution code (the certificate's subject CN)")
    issue.add_argument(
        "--force", action="store_true", help="replace the institution's existing certificate"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tls_dir: Path = args.tls_dir or Settings.from_env().tls_dir
    try:
        if args.pki_command == "init":
            paths = pki.init(tls_dir, tuple(args.host), force=args.force)
            for path in (paths.ca_crt, paths.ca_key, paths.server_crt, paths.server_key):
                print(path)
        else:
            for path in pki.issue(tls_dir, args.code, force=args.force):
                print(path)
    except pki.PkiError as exc:
        print(f"medswitch pki: {exc}", file=sys.stderr)
        return 2
    return 0
