#!/usr/bin/env python3
"""Validates EVE JSON lines against Suricata's EVE schema, with exwatch's one `policy`
key allowed at the top level (docs/eve.md).

    python3 scripts/validate-eve.py [--schema FILE] [EVE-FILE...]   (stdin without files)

Prints one line per failure (`file:line: field: message`), then `N lines, M failures`;
exits 0 when every line validates, 1 otherwise, 2 when the jsonschema module is missing
(scripts/setup.sh installs it).
"""
import argparse
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    print("validate-eve: the Python jsonschema module is missing: run scripts/setup.sh", file=sys.stderr)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "tests", "schema", "suricata-eve.schema.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default=DEFAULT_SCHEMA)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    with open(args.schema) as f:
        schema = json.load(f)
    # exwatch's own fields, all in one object: the one key the contract adds.
    schema["properties"]["policy"] = {"type": "object"}
    validator = jsonschema.Draft202012Validator(schema)
    lines = failures = 0
    sources = [(name, open(name)) for name in args.files] or [("-", sys.stdin)]
    for name, source in sources:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            lines += 1
            try:
                event = json.loads(line)
            except ValueError as err:
                failures += 1
                print(f"{name}:{number}: not JSON: {err}")
                continue
            errors = sorted(validator.iter_errors(event), key=lambda e: list(e.absolute_path))
            if errors:
                failures += 1
            for err in errors:
                field = ".".join(str(p) for p in err.absolute_path) or "(top)"
                print(f"{name}:{number}: {event.get('event_type')}: {field}: {err.message}")
    print(f"{lines} lines, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
