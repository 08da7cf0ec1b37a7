#!/usr/bin/env bash
# The collector's memory over many events (issue 23): `exwatch collect` keeps aggregates,
# not events, so its resident memory must stay flat however many events it collects.
#
# Analyses the many-flow capture (generate --pool 20000 --packets 1000000) once with
# --flows, then publishes its EVE lines again and again, each round moved to a day of its
# own (so each round's flows are new flows, and the report's dedup window moves on as a
# live sensor's would) and written by one of four sensors, into a stream of a
# redis-server of its own on a free loopback port (XADD MAXLEN ~ 500000: a round is
# collected before the next is sent). One collector (--every 10s, the JSON report kept
# current) gathers them. After every round: events collected, the collector's resident
# memory (VmRSS) and its peak (VmHWM), in kB.
#
# Usage: benches/collect-memory.sh [EVENTS]   (default 10000000)
# Needs redis-server, redis-cli (scripts/setup.sh) and python3. Builds the release binary
# unless EXWATCH names one. Prints one line per round, then a summary line.
set -euo pipefail

events=${1:-10000000}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${EXWATCH:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  EXWATCH="$root/target/release/exwatch"
fi
# shellcheck source=benches/redis-server.sh
. "$root/benches/redis-server.sh"

"$EXWATCH" generate --pool 20000 --packets 1000000 "$work/pool.pcap" >/dev/null 2>&1
"$EXWATCH" analyze "$work/pool.pcap" --flows --no-progress --eve-log "$work/base.json" >/dev/null 2>&1 || true
per_round=$(wc -l <"$work/base.json")
rounds=$(( (events + per_round - 1) / per_round ))

"$EXWATCH" collect --redis "redis://127.0.0.1:$port" --group mem --consumer c --out "$work/out" \
  --report-json "$work/report.json" --every 10s 2>"$work/collect.log" &
collect_pid=$!

# One round's XADD commands, in RESP, on standard output: every line of the base log
# moved ROUND days on (the date of each timestamp) and written by sensor site-(ROUND % 4).
cat >"$work/round.py" <<'PY'
import datetime, re, sys
base, rnd = sys.argv[1], int(sys.argv[2])
date = re.compile(rb'"(\d{4}-\d{2}-\d{2})T')
out = sys.stdout.buffer
shift = {}
def moved(m):
    d = m.group(1)
    if d not in shift:
        day = datetime.date.fromisoformat(d.decode()) + datetime.timedelta(days=rnd)
        shift[d] = day.isoformat().encode()
    return b'"' + shift[d] + b'T'
host = b'"host":"site-%d"' % (rnd % 4)
for line in open(base, 'rb'):
    line = date.sub(moved, line.rstrip(b'\n'))
    line = re.sub(rb'"host":"[^"]*"', host, line, count=1)
    args = [b'XADD', b'exwatch:eve', b'MAXLEN', b'~', b'500000', b'*', b'eve', line]
    out.write(b'*%d\r\n' % len(args))
    for a in args:
        out.write(b'$%d\r\n%s\r\n' % (len(a), a))
PY

lag() { cli XINFO GROUPS exwatch:eve | awk 'prev=="lag"{print; exit} {prev=$0}'; }
sent=0
for r in $(seq "$rounds"); do
  python3 "$work/round.py" "$work/base.json" "$r" | cli --pipe >/dev/null
  sent=$((sent + per_round))
  until [ "$(lag)" = 0 ] && [ "$(cli XPENDING exwatch:eve mem | head -1)" = 0 ]; do sleep 0.1; done
  rss=$(awk '/VmRSS/{print $2}' "/proc/$collect_pid/status")
  hwm=$(awk '/VmHWM/{print $2}' "/proc/$collect_pid/status")
  echo "round $r: $sent events collected, RSS $rss kB, peak $hwm kB"
done
kill -TERM "$collect_pid"; wait "$collect_pid" || true; collect_pid=""
echo "summary: $sent events in $rounds rounds of $per_round; $(tail -1 "$work/collect.log")"
