#!/usr/bin/env bash
# Do two builds of exwatch say the same things? Runs each binary over every capture in
# captures/ and captures/real/ (analyze --flows --workers 1, with the summary as text and
# as JSON), and over check, check --json, learn, learn --topology, report (JSON, CSV),
# generate and compare; then diffs the two sets of outputs. Timing (latency, stages,
# throughput, busy and wall seconds) is left out: it differs from run to run.
#
#   scripts/same-outputs.sh OLD-BINARY NEW-BINARY
#
# Prints the differences, and exits 0 when there are none, 1 when there are.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
old=${1:?usage: scripts/same-outputs.sh OLD-BINARY NEW-BINARY}
new=${2:?usage: scripts/same-outputs.sh OLD-BINARY NEW-BINARY}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
  local bin=$1 out=$2
  mkdir -p "$out"
  cd "$root"
  for f in captures/*.pcap* captures/real/*.pcap*; do
    local n
    n=$(basename "$f")
    "$bin" analyze "$f" --flows --workers 1 --no-progress --eve-log "$out/$n.eve" \
      --summary-json "$out/$n.json" 2>"$out/$n.err" && rc=0 || rc=$?
    echo "rc=$rc" >>"$out/$n.err"
    sed -i -E '/^(latency|stages|throughput)/d' "$out/$n.err"
    python3 - "$out/$n.json" <<'PY'
import json, sys
path = sys.argv[1]
try:
    doc = json.load(open(path))
except Exception:
    sys.exit(0)
timing = {"throughput", "latency", "latency_ns", "busy_seconds", "wall_seconds", "stages"}
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in timing}
    if isinstance(o, list):
        return [strip(x) for x in o]
    return o
json.dump(strip(doc), open(path, "w"), indent=1, sort_keys=True)
PY
  done
  ("$bin" check && echo rc=0 || echo "rc=$?") >"$out/check.txt" 2>&1
  "$bin" check --json >"$out/check.json" 2>&1 || true
  ("$bin" learn captures/sample-contoso.pcap --no-progress && echo rc=0 || echo "rc=$?") >"$out/learn.toml" 2>"$out/learn.err"
  ("$bin" learn captures/sample-contoso.pcap --no-progress --topology rules/topology.toml && echo rc=0 || echo "rc=$?") \
    >"$out/learn-compare.txt" 2>&1
  cp "$out/sample-contoso.pcap.eve" "$work/sample.eve"
  ("$bin" report "$work/sample.eve" --json "$out/report.json" --csv "$out/report.csv" && echo rc=0 || echo "rc=$?") \
    >"$out/report.err" 2>&1
  sed -i -E 's/"(generated|exwatch_version)":"[^"]*"//g' "$out/report.json" 2>/dev/null || true
  "$bin" generate "$work/gen.pcap" --packets 3000 >/dev/null 2>&1
  sha256sum <"$work/gen.pcap" >"$out/generate.sha256"
  ("$bin" compare captures/sample-contoso.pcap captures/sample-contoso.pcap && echo rc=0 || echo "rc=$?") \
    >"$out/compare.txt" 2>&1
}

run "$old" "$work/old"
run "$new" "$work/new"
if diff -r "$work/old" "$work/new"; then
  echo "same-outputs: no difference" >&2
else
  echo "same-outputs: the outputs above differ" >&2
  exit 1
fi
