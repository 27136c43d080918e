"""Export the JSON Schema of every contract Struct into ``schemas/json``.

Run ``onduty schemas export``; ``tests/unit/test_schema_export.py`` fails when the files drift.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from schemas.registry import EXPORTED_SCHEMAS

SCHEMA_DIR = Path(__file__).parent / "json"


def render_schemas() -> dict[str, str]:
    """File name -> JSON Schema text for every exported Struct (deterministic output)."""
    rendered = {}
    for file_stem, struct in EXPORTED_SCHEMAS.items():
        schema = msgspec.json.schema(struct)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = struct.__name__
        rendered[f"{file_stem}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def export_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into ``directory``; remove stale ones. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for stale in directory.glob("*.schema.json"):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
