"""The exported JSON Schema files are the contract for consumers in other languages: they must not drift."""

from schemas.export import SCHEMA_DIR, render_schemas


def test_exported_json_schemas_match_the_structs():
    rendered = render_schemas()
    on_disk = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.schema.json")}
    stale = sorted(set(on_disk) - set(rendered))
    missing = sorted(set(rendered) - set(on_disk))
    changed = sorted(name for name in set(rendered) & set(on_disk) if rendered[name] != on_disk[name])
    assert not (stale or missing or changed), (
        f"JSON Schema files drifted (stale {stale}, missing {missing}, changed {changed}); "
        "run `onduty schemas export` and commit the result"
    )


def test_every_struct_field_is_documented():
    import json

    for name, text in render_schemas().items():
        schema = json.loads(text)
        for def_name, definition in schema.get("$defs", {}).items():
            assert definition.get("description"), f"{name}: {def_name} has no docstring"
