#!/usr/bin/env bash
# Sets up, builds, and analyses the bundled sample capture of the example organization
# (rules/topology.toml) against the Exchange policy (rules/exchange.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
status=0
cargo run --release --quiet -- analyze captures/sample-contoso.pcap --eve-log - || status=$?
case $status in
  0) echo "demo: exit status 0: no findings" >&2 ;;
  1) echo "demo: exit status 1: the sample holds policy violations (as it should)" >&2 ;;
  *) echo "demo: exit status $status: bad input or configuration" >&2; exit "$status" ;;
esac
