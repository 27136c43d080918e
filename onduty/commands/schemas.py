"""``onduty schemas export``: write the JSON Schema files consumers use."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schemas", help="export JSON Schema files from the schema Structs")
    parser.add_argument("action", choices=["export"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from schemas.export import export_schemas

    for path in export_schemas():
        print(path)
    return 0
