#!/usr/bin/env bash
# Live-capture benchmark (issues 3 and 26): how fast can frames arrive before `exwatch live`
# loses any, and what does each packet cost?
#
# Generates a capture of the example organization with `exwatch generate` (or takes
# CAPTURE), joins two fresh network namespaces with a veth pair, runs `exwatch live` on one
# end and replays the capture into the other end, RUNS times per rate, a fresh exwatch each
# time. Every run measures the rate asked, the rate the generator reached, packets sent,
# packets exwatch's workers received, frames lost (kernel + interface drops from libpcap's
# stats, and frames shed because a worker fell behind, all from /metrics), loss (frames
# sent that no worker received), the CPU-seconds exwatch spent (user + system time of all
# its threads, from /proc, over the replay and the drain), CPU-seconds per million packets
# received, and its peak RSS (VmHWM). With two cores or more, exwatch is pinned to core 1
# and the generator to core 0, so the tool's CPU is its own.
#
# Each run also analyses the same capture offline (`exwatch analyze`, pinned alike, EVE to
# /dev/null), so the live path's cost is shown beside the offline one's: CPU-seconds per
# million packets of both, and their ratio per rate (`live_to_offline`).
#
# When Suricata is installed (benches/peers.sh installs it), each run is replayed a second
# time into Suricata on the same interface (af-packet, one capture thread, the port rules
# of benches/suricata-policy.sh, EVE alerts on), pinned alike, with the same measures from
# /proc and its own capture counters. When it is absent the script says so and goes on.
#
# Generators: tcpreplay, with -K (the capture preloaded into memory) and --loop, so "top"
# is the machine's top speed, not the disk's; or trafgen (netsniff-ng), GENERATOR=trafgen,
# for rates tcpreplay cannot reach: the capture is converted once to a trafgen config, sent
# with --cpus 1 and --rate (nothing for "top"); its reached rate is packets sent over the
# seconds trafgen ran.
#
# The replayed frames stay on the veth pair: the namespaces have no route to anything,
# and the receiving one owns none of the capture's addresses, so its kernel drops every
# frame after libpcap has seen it.
#
# Progress goes to stderr as it runs (which run, which rate, what it measured). At the end:
# per tool and rate, the medians of every measure with their spread (min-max over the
# runs), and the headline, the highest rate with zero loss in every run. Under RESULTS:
#   runs.json      every run: {"script", "capture", "packets", "generator", "runs",
#                  "rates", "cores", "cpu_model", "exwatch_args", "suricata" (its version,
#                  or why it was left out), "records": [one per run and tool: "tool",
#                  "generator", "rate" ("50000" or "top"), "offered_pps" (null for top),
#                  "run", "achieved_pps", "sent", "received", "summary_read" (exwatch's
#                  --summary-json packets read; null for suricata), "kernel_drops",
#                  "interface_drops" and "shed" (null for suricata), "lost", "loss_pct",
#                  "cpu_seconds", "cpu_s_per_mpkt", "peak_rss_kib"], "summary": [one per
#                  tool and rate: "tool", "rate", "runs", "median_achieved_pps",
#                  "median_loss_pct", "min_loss_pct", "max_loss_pct",
#                  "median_cpu_s_per_mpkt", "min_cpu_s_per_mpkt", "max_cpu_s_per_mpkt",
#                  "max_peak_rss_kib", "zero_loss_every_run", and for exwatch
#                  "live_to_offline" (its median CPU-s/Mpkt over the offline one's, or null)],
#                  "zero_loss": {tool: the highest such rate as {"rate",
#                  "median_achieved_pps"}, or null}, "offline": {"runs": [{"run",
#                  "cpu_seconds", "cpu_s_per_mpkt"}], "median_cpu_s_per_mpkt",
#                  "min_cpu_s_per_mpkt", "max_cpu_s_per_mpkt"} (null with OFFLINE=0)}
#   runs.csv       the records, one line each, the same fields
#   loss-cpu.svg   loss (%) and CPU-seconds per million packets against the rate offered
#                  (the rate the generator reached, per run), exwatch and Suricata: one dot
#                  per run, a line through the medians (benches/live-plot.py); the
#                  baseline too, when there is one (tool "baseline", records alike)
#   <tool>-<rate>-run<N>/  that run's logs: the tool's stderr, the generator's output, and
#                  for exwatch (and the baseline) its --summary-json, its last /metrics
#                  page and its EVE log
#
# Environment (all optional):
#   PACKETS=N        packets to generate (default 300000)
#   CAPTURE=FILE     replay this capture instead of generating one (PACKETS then unused)
#   RATES="..."      packets per second, "top" for as fast as the generator goes
#                    (default "50000 100000 200000 400000 top")
#   RUNS=N           runs per rate and tool (default 3)
#   GENERATOR=NAME   tcpreplay (default) or trafgen
#   LOOP=N           times the capture is sent per run at a fixed rate (default 1)
#   TOP_LOOP=N       times it is sent per run at "top", so the top rate lasts (default 10)
#   RESULTS=DIR      where the files above go (default target/live-replay/<UTC time>)
#   EXWATCH=PATH     the exwatch binary (default: built with cargo, release)
#   EXWATCH_BASELINE=PATH  a second build, run live at every rate of every run in turns
#                    with the first (tool "baseline" in the results): odd runs run exwatch
#                    first, even runs the baseline. Of two builds run back to back the
#                    second measured more CPU at 180,000 pps (about 0.04 CPU-s/Mpkt,
#                    whichever build it was), so single series of two builds compare
#                    badly; this gives each build both places. Use an even RUNS.
#   EXWATCH_ARGS=..  more arguments to `exwatch live` (say "--workers 2")
#   SURICATA=0       leave Suricata out
#   OFFLINE=0        leave out the offline analysis of the capture
#
# Usage (as root, after scripts/setup.sh):
#   bash benches/live-replay.sh
#   RUNS=5 PACKETS=300000 RATES="50000 100000 200000 400000 top" EXWATCH_ARGS="--workers 2" \
#     RESULTS=/tmp/live bash benches/live-replay.sh
#   PACKETS=1000000 RATES=180000 bash benches/live-replay.sh   # CPU per Mpkt at a fixed rate
#   GENERATOR=trafgen RATES="500000 1000000 top" bash benches/live-replay.sh
set -euo pipefail
export LC_ALL=C
# Paths given are relative to where the script was started, not to the repository.
[ -z "${CAPTURE:-}" ] || CAPTURE=$(realpath -m -- "$CAPTURE")
[ -z "${RESULTS:-}" ] || RESULTS=$(realpath -m -- "$RESULTS")
[ -z "${EXWATCH:-}" ] || EXWATCH=$(realpath -m -- "$EXWATCH")
[ -z "${EXWATCH_BASELINE:-}" ] || EXWATCH_BASELINE=$(realpath -m -- "$EXWATCH_BASELINE")
cd "$(dirname "$0")/.."
# shellcheck source=benches/suricata-policy.sh
. benches/suricata-policy.sh

PACKETS=${PACKETS:-300000}
RATES=${RATES:-"50000 100000 200000 400000 top"}
EXWATCH_ARGS=${EXWATCH_ARGS:-}
RUNS=${RUNS:-3}
GENERATOR=${GENERATOR:-tcpreplay}
LOOP=${LOOP:-1}
TOP_LOOP=${TOP_LOOP:-10}
RESULTS=${RESULTS:-target/live-replay/$(date -u +%Y%m%dT%H%M%SZ)}
for var in PACKETS RUNS LOOP TOP_LOOP; do
  case ${!var} in '' | *[!0-9]* | 0)
    echo "live-replay: $var must be a positive number, not '${!var}'" >&2
    exit 2
    ;;
  esac
done
for rate in $RATES; do
  case $rate in top) ;; '' | *[!0-9]* | 0*)
    echo "live-replay: RATES: '$rate' is neither a number of packets per second nor 'top'" >&2
    exit 2
    ;;
  esac
done
case $GENERATOR in tcpreplay | trafgen) ;; *)
  echo "live-replay: GENERATOR must be tcpreplay or trafgen, not '$GENERATOR'" >&2
  exit 2
  ;;
esac
if [ -n "${CAPTURE:-}" ] && [ ! -r "$CAPTURE" ]; then
  echo "live-replay: CAPTURE: cannot read '$CAPTURE'" >&2
  exit 2
fi
METRICS_PORT=9911   # in the receiving namespace's own loopback: always free

if [ "$(id -u)" -ne 0 ]; then
  echo "live-replay: needs root (network namespaces, capture)" >&2
  exit 1
fi
generator_tools=(tcpreplay)
[ "$GENERATOR" = trafgen ] && generator_tools=(trafgen netsniff-ng)
for tool in ip curl python3 "${generator_tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "live-replay: $tool not found: run scripts/setup.sh" >&2; exit 1; }
done

if [ -n "${EXWATCH:-}" ]; then
  exwatch=$EXWATCH
else
  cargo build --release --quiet
  exwatch=$PWD/target/release/exwatch
fi
baseline=${EXWATCH_BASELINE:-}
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "live-replay: EXWATCH_BASELINE=$baseline is not an executable file" >&2
  exit 2
fi
mkdir -p "$RESULTS"
RESULTS=$(realpath "$RESULTS")
say() { echo "live-replay: $*" >&2; }

work=$(mktemp -d)
tx="exwb$$a"   # namespace and veth end the generator sends on
rx="exwb$$b"   # namespace and veth end exwatch listens on
exwatch_pid=""

cleanup() {
  for pid in "$exwatch_pid" "${suricata_pid:-}"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  ip netns del "$tx" 2>/dev/null || true
  ip netns del "$rx" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${CAPTURE:-}" ]; then
  cp "$CAPTURE" "$work/replay.pcap"
  echo "$CAPTURE" >"$work/generate.txt"
else
  "$exwatch" generate "$work/replay.pcap" --packets "$PACKETS" 2>"$work/generate.txt"
  cat "$work/generate.txt" >&2
fi
# Frames in the capture: trafgen's --num counts them, the report names them.
frames=$(tcpdump -nr "$work/replay.pcap" 2>/dev/null | wc -l)
if [ "$GENERATOR" = trafgen ]; then
  netsniff-ng --in "$work/replay.pcap" --out "$work/replay.cfg" --silent >"$work/convert.txt" 2>&1 ||
    { cat "$work/convert.txt" >&2; exit 1; }
fi

ip netns add "$tx"
ip netns add "$rx"
for ns in "$tx" "$rx"; do
  # No IPv6 chatter of the namespaces' own mixed into the counts.
  ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
done
ip link add "$tx" netns "$tx" type veth peer name "$rx" netns "$rx"
for ns in "$tx" "$rx"; do
  # The capture holds 802.1Q/QinQ-tagged frames a little over 1514 bytes.
  ip -n "$ns" link set "$ns" mtu 9000
  ip -n "$ns" link set "$ns" up
  ip -n "$ns" link set lo up
done

# The value of one sample of the /metrics page (0 when absent).
metric() {
  awk -v name="$1" '$1 == name { v = $2 } END { print (v == "" ? 0 : v) }' "$2"
}

scrape() {
  ip netns exec "$rx" curl -sf -m 3 "http://127.0.0.1:$METRICS_PORT/metrics" >"$1"
}

# Counted by exwatch so far: frames received by workers + shed + dropped.
seen() {
  scrape "$work/m" || { echo 0; return; }
  echo $(( $(metric exwatch_packets_total "$work/m") + $(metric exwatch_shed_frames_total "$work/m") \
    + $(metric exwatch_kernel_drops_total "$work/m") + $(metric exwatch_interface_drops_total "$work/m") ))
}

# Suricata, when there: a config for af-packet on the receiving end, with stats every
# second so its capture counters can be read back.
have_suricata=0
suricata_note="left out (SURICATA=0)"
if [ "${SURICATA:-1}" != 0 ] && ! command -v suricata >/dev/null; then
  suricata_note="not installed: skipped (benches/peers.sh installs it)"
  say "suricata $suricata_note"
fi
if [ "${SURICATA:-1}" != 0 ] && command -v suricata >/dev/null; then
  have_suricata=1
  suricata_note=$(suricata -V 2>&1 | head -n 1)
  mkdir -p "$work/suricata"
  {
    printf '%%YAML 1.1\n---\n'
    suricata_vars
    cat <<YAML
af-packet:
  - interface: $rx
    threads: 1
    cluster-id: 99
    cluster-type: cluster_flow
    defrag: yes
stats:
  enabled: yes
  interval: 1
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - alert
        - stats
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: yes
YAML
  } >"$work/suricata/suricata.yaml"
  suricata_rules >"$work/suricata/exchange.rules"
fi
suricata_pid=""

# Pinning: the tool on one core, tcpreplay on another, when there are two.
pin_tool=()
pin_replay=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_tool=(taskset -c 1)
  pin_replay=(taskset -c 0)
fi

# CPU seconds (user + system, all threads) process $1 has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# Suricata's capture counters (packets, drops) in its latest stats event: to tell when it
# has drained (the count it prints at exit is the one reported).
suricata_capture() {
  grep '"event_type":"stats"' "$work/suricata/log/eve.json" 2>/dev/null | tail -n 1 |
    python3 -c 'import json, sys
line = sys.stdin.read().strip()
c = json.loads(line)["stats"].get("capture", {}) if line else {}
print(c.get("kernel_packets", 0), c.get("kernel_drops", 0))'
}

# replay RATE DIR: sends the capture from the sending end at RATE ("top": as fast as the
# generator goes), its output in DIR/generator.txt; sets `sent` and `reached` (pps).
replay() {
  local rate=$1 dir=$2 loops=$LOOP start end
  [ "$rate" = top ] && loops=$TOP_LOOP
  if [ "$GENERATOR" = tcpreplay ]; then
    local speed=(--pps="$rate")
    [ "$rate" = top ] && speed=(--topspeed)
    ip netns exec "$tx" "${pin_replay[@]}" tcpreplay -K --loop="$loops" --intf1="$tx" "${speed[@]}" \
      "$work/replay.pcap" >"$dir/generator.txt" 2>&1 || { cat "$dir/generator.txt" >&2; exit 1; }
    sent=$(awk '/Successful packets:/ { print $3 }' "$dir/generator.txt")
    reached=$(awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /^pps/) { printf "%.0f", $(i - 1); exit } }' \
      "$dir/generator.txt")
  else
    local speed=()
    [ "$rate" = top ] || speed=(--rate "${rate}pps")
    start=$EPOCHREALTIME
    ip netns exec "$tx" "${pin_replay[@]}" trafgen --dev "$tx" --in "$work/replay.cfg" --cpus 1 --no-sock-mem --notouch-irq \
      --num $((frames * loops)) "${speed[@]}" >"$dir/generator.txt" 2>&1 || { cat "$dir/generator.txt" >&2; exit 1; }
    end=$EPOCHREALTIME
    sent=$(tr -d '\r' <"$dir/generator.txt" | awk '/packets outgoing/ { print $1; exit }')
    reached=$(awk -v n="$sent" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", n / (b - a) }')
  fi
}

# Peak resident set (KiB) of process $1 so far.
peak_rss() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# record FIELD...: one run's line in the table the report is made from (tab-separated, the
# order of benches/live-plot.py's FIELDS; "null" where a measure does not apply).
record() { (IFS=$'\t'; echo "$*") >>"$RESULTS/runs.tsv"; }
: >"$RESULTS/runs.tsv"
: >"$RESULTS/offline.tsv"

# The same capture analysed offline, pinned as the live tool is: its CPU-seconds per
# million packets, the cost the live path is compared with.
offline_run() {
  local run=$1 dir=$2
  # Status 1 says there were findings: the capture has some. Bash's own `time` gives the
  # CPU time in milliseconds; /usr/bin/time's hundredths made a small capture's 0.00.
  local status=0 TIMEFORMAT='%3U %3S'
  { time "${pin_tool[@]}" "$exwatch" analyze "$work/replay.pcap" --eve-log /dev/null --no-progress \
    --summary-json "$dir/summary.json" 2>"$dir/exwatch.txt" || status=$?; } 2>"$dir/time.txt"
  [ "$status" -le 1 ] || { cat "$dir/exwatch.txt" >&2; exit 1; }
  local cpu per_mpkt
  cpu=$(tail -n 1 "$dir/time.txt" | awk '{ printf "%.3f", $1 + $2 }')
  per_mpkt=$(awk -v c="$cpu" -v r="$frames" 'BEGIN { printf "%.3f", c / (r / 1e6) }')
  printf '%s\t%s\t%s\n' "$run" "$cpu" "$per_mpkt" >>"$RESULTS/offline.tsv"
  say "run $run/$RUNS, exwatch analyze (offline): $cpu CPU-s, $per_mpkt CPU-s/Mpkt"
}

# exwatch_run RATE RUN DIR BINARY TOOL: one live run of BINARY, recorded as TOOL.
exwatch_run() {
  local rate=$1 run=$2 dir=$3 binary=$4 tool=$5
  # A fresh exwatch per run, so every counter starts at zero.
  # shellcheck disable=SC2086
  ip netns exec "$rx" "${pin_tool[@]}" "$binary" live --interface "$rx" --eve-log "$dir/eve.json" \
    --summary-json "$dir/summary.json" --metrics "127.0.0.1:$METRICS_PORT" $EXWATCH_ARGS \
    2>"$dir/exwatch.txt" &
  exwatch_pid=$!
  for _ in $(seq 100); do
    grep -q watching "$dir/exwatch.txt" && scrape "$work/m" && break
    kill -0 "$exwatch_pid" 2>/dev/null || { cat "$dir/exwatch.txt" >&2; exit 1; }
    sleep 0.1
  done

  local cpu_before
  cpu_before=$(cpu_seconds "$exwatch_pid")
  replay "$rate" "$dir"

  # Let the workers drain: wait until the counts stop moving (at most 10 s).
  local last=-1 now
  for _ in $(seq 20); do
    now=$(seen)
    [ "$now" = "$last" ] && break
    last=$now
    sleep 0.5
  done
  # The drain loop's last second of waiting is idle time, spent alike by any tool.
  local cpu rss
  cpu=$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$exwatch_pid")" 'BEGIN { printf "%.3f", b - a }')
  rss=$(peak_rss "$exwatch_pid")
  scrape "$work/m"
  cp "$work/m" "$dir/metrics.txt"
  local received kernel ifdrops shed
  received=$(metric exwatch_packets_total "$work/m")
  kernel=$(metric exwatch_kernel_drops_total "$work/m")
  ifdrops=$(metric exwatch_interface_drops_total "$work/m")
  shed=$(metric exwatch_shed_frames_total "$work/m")

  kill -TERM "$exwatch_pid"
  local status=0
  wait "$exwatch_pid" || status=$?
  exwatch_pid=""
  [ "$status" -eq 0 ] || say "exwatch exited with status $status at $rate pps, run $run"
  local read_json
  read_json=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packets"]["read"])' \
    "$dir/summary.json" 2>/dev/null || echo null)

  local lost=$((kernel + ifdrops + shed)) missing=$((sent - received)) loss per_mpkt
  loss=$(awk -v m="$missing" -v s="$sent" 'BEGIN { printf "%.3f", s ? 100 * m / s : 0 }')
  per_mpkt=$(awk -v c="$cpu" -v r="$received" 'BEGIN { printf "%.3f", r ? c / (r / 1e6) : 0 }')
  record "$tool" "$GENERATOR" "$rate" "$run" "$reached" "$sent" "$received" "$read_json" "$kernel" "$ifdrops" \
    "$shed" "$lost" "$loss" "$cpu" "$per_mpkt" "$rss"
  say "run $run/$RUNS, $tool, $rate pps: reached $reached pps, sent $sent, received $received, lost $lost, loss $loss%, $per_mpkt CPU-s/Mpkt, peak RSS $rss KiB"
}

suricata_run() {
  local rate=$1 run=$2 dir=$3
  # The same rate into Suricata: its capture counters from its last stats event.
  rm -rf "$work/suricata/log"
  mkdir -p "$work/suricata/log"
  ip netns exec "$rx" "${pin_tool[@]}" suricata -c "$work/suricata/suricata.yaml" \
    -S "$work/suricata/exchange.rules" -l "$work/suricata/log" --af-packet="$rx" \
    >"$dir/suricata.txt" 2>&1 &
  suricata_pid=$!
  for _ in $(seq 300); do
    grep -q "Engine started" "$dir/suricata.txt" 2>/dev/null && break
    kill -0 "$suricata_pid" 2>/dev/null || { cat "$dir/suricata.txt" >&2; exit 1; }
    sleep 0.1
  done
  local cpu_before
  cpu_before=$(cpu_seconds "$suricata_pid")
  replay "$rate" "$dir"
  # Drained once two stats events a second apart count the same packets.
  local last=-1 now
  for _ in $(seq 20); do
    sleep 1.1
    now=$(suricata_capture)
    [ "$now" = "$last" ] && break
    last=$now
  done
  local cpu rss received drops
  cpu=$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$suricata_pid")" 'BEGIN { printf "%.3f", b - a }')
  rss=$(peak_rss "$suricata_pid")
  read -r received drops <<<"$(suricata_capture)"
  kill -TERM "$suricata_pid"
  wait "$suricata_pid" 2>/dev/null || true
  suricata_pid=""
  cp "$work/suricata/log/eve.json" "$dir/eve.json" 2>/dev/null || true
  # Its last word at exit ("device: IF: packets: N, drops: D") is the final count.
  local final
  final=$(sed -n 's/.*device: [^:]*: packets: \([0-9]*\), drops: \([0-9]*\).*/\1 \2/p' "$dir/suricata.txt" | tail -n 1)
  [ -z "$final" ] || read -r received drops <<<"$final"
  # Suricata's packets count includes its drops: what it analysed is the difference.
  local analysed=$((received - drops)) loss per_mpkt
  loss=$(awk -v a="$analysed" -v s="$sent" 'BEGIN { printf "%.3f", s ? 100 * (s - a) / s : 0 }')
  per_mpkt=$(awk -v c="$cpu" -v r="$analysed" 'BEGIN { printf "%.3f", r > 0 ? c / (r / 1e6) : 0 }')
  record suricata "$GENERATOR" "$rate" "$run" "$reached" "$sent" "$analysed" null "$drops" null null \
    "$((sent - analysed))" "$loss" "$cpu" "$per_mpkt" "$rss"
  say "run $run/$RUNS, suricata, $rate pps: reached $reached pps, sent $sent, analysed $analysed, drops $drops, loss $loss%, $per_mpkt CPU-s/Mpkt, peak RSS $rss KiB"
}

# Interleaved: every rate once per run, exwatch (and the baseline, in turns) then
# Suricata, so drift on a shared machine falls on every rate and tool alike.
for ((run = 1; run <= RUNS; run++)); do
  if [ "${OFFLINE:-1}" != 0 ]; then
    dir=$RESULTS/offline-run$run
    mkdir -p "$dir"
    offline_run "$run" "$dir"
  fi
  for rate in $RATES; do
    # With a baseline the two builds take turns going first (see EXWATCH_BASELINE).
    builds=(exwatch)
    if [ -n "$baseline" ]; then
      if ((run % 2)); then builds=(exwatch baseline); else builds=(baseline exwatch); fi
    fi
    for tool in "${builds[@]}"; do
      dir=$RESULTS/$tool-$rate-run$run
      mkdir -p "$dir"
      if [ "$tool" = baseline ]; then binary=$baseline; else binary=$exwatch; fi
      exwatch_run "$rate" "$run" "$dir" "$binary" "$tool"
    done
    [ "$have_suricata" = 1 ] || continue
    dir=$RESULTS/suricata-$rate-run$run
    mkdir -p "$dir"
    suricata_run "$rate" "$run" "$dir"
  done
done

printf '\nexwatch live, replayed capture: %s frames (%s), %s, %s cores, %s runs per rate, exwatch args: %s\n' \
  "$frames" "$(tail -1 "$work/generate.txt" | sed 's/.*(\(.*\))/\1/')" "$GENERATOR" "$(nproc)" "$RUNS" \
  "${EXWATCH_ARGS:-(defaults)}"
printf 'suricata: %s\n' "$suricata_note"
python3 benches/live-plot.py "$RESULTS" \
  "$(printf '%s\n' script=live-replay "capture=${CAPTURE:-exwatch generate --packets $PACKETS}" "packets=$frames" \
    "generator=$GENERATOR" "runs=$RUNS" "rates=$RATES" "cores=$(nproc)" \
    "cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo '?')" \
    "exwatch_args=$EXWATCH_ARGS" "suricata=$suricata_note")"
say "every run's logs, runs.json, runs.csv and loss-cpu.svg are in $RESULTS"
