#!/usr/bin/env python3
"""Validates EVE JSON lines against Suricata's EVE schema, with exwatch's one `policy`
key allowed at the top level (docs/eve.md), and what a SOC pipeline relies on beyond
the schema: every alert repeats `policy` in `alert.metadata` (verdict, rule, evidence)
and has a signature id in the range reserved for local rules; a `flow` event has
Suricata's `flow.reason`, `flow.alerted` and `flow.age`; an aggregate alert names the
flows it stands for (`policy.aggregate.flow_ids`, its own `flow_id` first, at most 64);
an aggregate flow record counts its flows, packets and bytes; a `stats` event's
`policy.packets.skipped_by_reason` maps each reason to a count and `policy.flow_events`
says which flows got a flow event.

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


LOCAL_SIDS = range(1_000_000, 2_000_000)


def contract_errors(event):
    """What the event breaks of exwatch's own contract: (field, message) pairs."""
    errors = []
    policy = event.get("policy")
    if event.get("event_type") == "alert" and isinstance(policy, dict):
        alert = event.get("alert", {})
        meta = alert.get("metadata")
        if not isinstance(meta, dict):
            errors.append(("alert.metadata", "missing: every alert repeats its policy facts there"))
        else:
            for key in ("verdict", "rule", "evidence", "conn_state"):
                want = [policy[key]] if key in policy else None
                if meta.get(key) != want:
                    errors.append((f"alert.metadata.{key}", f"{meta.get(key)!r} where policy.{key} is {policy.get(key)!r}"))
        aggregate = policy.get("aggregate")
        if isinstance(aggregate, dict):
            ids = aggregate.get("flow_ids")
            held = aggregate.get("flows")
            if not isinstance(ids, list) or not ids or ids[0] != event.get("flow_id"):
                errors.append(("policy.aggregate.flow_ids", "an aggregate alert lists its flows, its own flow_id first"))
            elif not isinstance(held, int) or len(ids) != min(held, 64):
                errors.append(("policy.aggregate.flow_ids", f"{len(ids)} ids for {held!r} flows (the first 64 are listed)"))
        if alert.get("signature_id") not in LOCAL_SIDS:
            errors.append(("alert.signature_id", f"{alert.get('signature_id')!r} is outside 1000000-1999999"))
    if event.get("event_type") == "flow" and isinstance(policy, dict):
        flow = event.get("flow", {})
        if flow.get("reason") not in ("timeout", "forced", "shutdown"):
            errors.append(("flow.reason", f"{flow.get('reason')!r} is not timeout, forced or shutdown"))
        if not isinstance(flow.get("alerted"), bool) or not isinstance(flow.get("age"), int):
            errors.append(("flow", "flow.alerted (boolean) and flow.age (integer) are required"))
        aggregate = policy.get("aggregate")
        if aggregate is not None and not all(isinstance(aggregate.get(k), int) for k in ("flows", "pkts", "bytes")):
            errors.append(("policy.aggregate", "an aggregate flow record counts its flows, pkts and bytes"))
    if event.get("event_type") == "stats" and isinstance(policy, dict):
        by_reason = policy.get("packets", {}).get("skipped_by_reason", {})
        if not isinstance(by_reason, dict) or not all(isinstance(n, int) for n in by_reason.values()):
            errors.append(("policy.packets.skipped_by_reason", "not a map of reason to count"))
        if policy.get("flow_events") not in ("all", "in-scope", "off"):
            errors.append(("policy.flow_events", f"{policy.get('flow_events')!r} is not all, in-scope or off"))
    return errors


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
            found = [(".".join(str(p) for p in e.absolute_path) or "(top)", e.message) for e in errors]
            found += contract_errors(event)
            if found:
                failures += 1
            for field, message in found:
                print(f"{name}:{number}: {event.get('event_type')}: {field}: {message}")
    print(f"{lines} lines, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
