"""`tidegate schema`: print the JSON Schemas (for editors and other tools)."""
from __future__ import annotations

import json

from validators.schema import KINDS, schema


def register(sub):
    p = sub.add_parser("schema", help="print the JSON Schema of cloud.yaml, services/*.yaml, rules.yaml, tests/gate.yaml or images/*.yaml",
                       description="Print a JSON Schema (Draft 2020-12). Point your editor's YAML "
                                   "language server at it for completion and inline errors.")
    p.add_argument("kind", nargs="?", choices=KINDS, default="service",
                   help="which file's schema (default: service)")
    p.set_defaults(func=run)


def run(args) -> int:
    print(json.dumps(schema(args.kind), indent=2))
    return 0
