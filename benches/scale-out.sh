#!/usr/bin/env bash
# Many sensors, one answer (docs/scale-out.md): what publishing to Redis and collecting
# cost, against a redis-server of its own on a free loopback port.
#
#   1. publishing: `analyze --flows` of the many-flow capture (generate --pool 20000
#      --packets 1000000), without and with --redis, interleaved A B A B..., medians of
#      wall and CPU time; Redis memory per million events in the stream;
#   2. collect: events/s from a full stream (the last run's events and four more
#      sensors' copies of them, about 256,000) into DIR/<host>/eve.json with the report
#      kept current (--every 1s), until the group's lag is 0 and nothing is pending;
#   3. collector memory: its peak RSS after successive rounds of events, to show it stays
#      flat (it keeps aggregates, not events).
#
# Usage: benches/scale-out.sh [RUNS] [ROUNDS]   (default 5 runs, 10 rounds)
# Needs redis-server and redis-cli (scripts/setup.sh). Builds the release binary.
set -euo pipefail

runs=${1:-5}
rounds=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exw="$root/target/release/exwatch"
# shellcheck source=benches/redis-server.sh
. "$root/benches/redis-server.sh"
url="redis://127.0.0.1:$port"

"$exw" generate --pool 20000 --packets 1000000 "$work/pool.pcap" >/dev/null 2>&1

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# 1. Publishing overhead: wall and CPU (user + system) time of each run.
: >"$work/off"; : >"$work/on"; : >"$work/off.cpu"; : >"$work/on.cpu"
run() {
  local out=$1; shift
  local TIMEFORMAT='%3R %3U %3S'
  { time "$exw" analyze "$work/pool.pcap" --flows --eve-log /dev/null --no-progress "$@" 2>/dev/null; } \
    2>"$work/time" || true
  awk '{print $1}' "$work/time" >>"$work/$out"
  awk '{print $2 + $3}' "$work/time" >>"$work/$out.cpu"
}
events=0
for i in $(seq "$runs"); do
  run off
  cli DEL exwatch:eve >/dev/null
  run on --redis "$url"
  events=$(cli XLEN exwatch:eve)
done
mem=$(cli MEMORY USAGE exwatch:eve)
echo "publishing (analyze --flows, 1M packets, 51k flows, $events events; median of $runs interleaved runs, shared machine):"
echo "  wall without --redis: $(median <"$work/off") s, with --redis: $(median <"$work/on") s (each run: $(tr '\n' ' ' <"$work/off")/ $(tr '\n' ' ' <"$work/on"))"
echo "  CPU (user + system) without --redis: $(median <"$work/off.cpu") s, with --redis: $(median <"$work/on.cpu") s"
echo "  Redis memory: $mem bytes for $events stream entries = $((mem * 1000000 / events / 1048576)) MiB per million events"

# 2. collect: the stream as it is now and four more sensors' copies, timed until the lag is 0.
for s in 1 2 3 4; do
  "$exw" analyze "$work/pool.pcap" --flows --eve-log /dev/null --no-progress --sensor-name "site-$s" \
    --redis "$url" 2>/dev/null || true
done
events=$(cli XLEN exwatch:eve)
collect_run() {
  local group=$1 out=$2
  "$exw" collect --redis "$url" --group "$group" --consumer c --out "$out" --report-json "$out.json" \
    --every 1s 2>"$out.log" &
  collect_pid=$!
}
t0=$(date +%s%N)
collect_run g1 "$work/c1"
until [ "$(cli XINFO GROUPS exwatch:eve | awk 'prev=="lag"{print; exit} {prev=$0}')" = 0 ] \
  && [ "$(cli XPENDING exwatch:eve g1 | head -1)" = 0 ]; do sleep 0.05; done
t1=$(date +%s%N)
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$collect_pid/stat")
# Each thread's time on a CPU and waiting for one (/proc/PID/task/TID/schedstat, ns): on
# a machine shared with other work, the second says how much of the wall time was theirs.
sched=$(cat /proc/"$collect_pid"/task/*/schedstat | awk '{run += $1; wait += $2} END {printf "%.2f s running, %.2f s waiting for a CPU", run / 1e9, wait / 1e9}')
kill -TERM "$collect_pid"; wait "$collect_pid" || true; collect_pid=""
awk -v n="$events" -v ns="$((t1 - t0))" -v cpu="$cpu" -v sched="$sched" \
  'BEGIN {printf "collect: %d events in %.2f s = %d events/s, %.2f s of collector CPU; its threads: %s (files fsynced per batch, report every 1s)\n", n, ns / 1e9, n / (ns / 1e9), cpu, sched}' 

# 3. Collector memory over rounds: each round publishes another capture of the pool
#    (another seed: other flows), as another sensor.
collect_run g2 "$work/c2"
for r in $(seq "$rounds"); do
  "$exw" generate --pool 20000 --packets 1000000 --seed "$((r + 100))" "$work/round.pcap" >/dev/null 2>&1
  "$exw" analyze "$work/round.pcap" --flows --eve-log /dev/null --no-progress --sensor-name "round-$r" \
    --redis "$url" --redis-maxlen 100000000 2>/dev/null || true
  until [ "$(cli XPENDING exwatch:eve g2 | head -1)" = 0 ] \
    && [ "$(cli XINFO GROUPS exwatch:eve | awk '/^g2$/{g=1} g&&prev=="lag"{print; exit} {prev=$0}')" = 0 ]; do
    sleep 0.1
  done
  collected=$(cat "$work"/c2/*/eve.json | wc -l)
  echo "  after round $r: $collected events collected, peak RSS $(awk '/VmHWM/{print $2}' /proc/$collect_pid/status) kB"
done
kill -TERM "$collect_pid"; wait "$collect_pid" || true; collect_pid=""
