#!/usr/bin/env bash
# Live-capture benchmark (issue 3): how fast can frames arrive before `exwatch live`
# loses any?
#
# Generates a capture of the example organization with `exwatch generate`, joins two
# fresh network namespaces with a veth pair, runs `exwatch live` on one end and replays
# the capture into the other end with tcpreplay, once per rate. For each rate it reports
# the rate asked, the rate tcpreplay reached, packets sent, packets exwatch's workers
# received, frames lost (kernel + interface drops from libpcap's stats, and frames shed
# because a worker fell behind, all from /metrics), and loss (frames sent that no worker
# received), and the CPU exwatch spent per million packets received (user + system time of
# all its threads, from /proc, over the replay and the drain). Then the highest rate with
# zero loss. With two cores or more, exwatch is pinned to core 1 and tcpreplay to core 0,
# so the tool's CPU is its own.
#
# When Suricata is installed (benches/peers.sh installs it), each rate is replayed a second
# time into Suricata on the same interface (af-packet, one capture thread, the port
# rules of benches/suricata-policy.sh, EVE alerts on), pinned alike, and its CPU per
# million packets and loss are printed beside exwatch's, from /proc and its own capture
# counters. SURICATA=0 leaves it out.
#
# The replayed frames stay on the veth pair: the namespaces have no route to anything,
# and the receiving one owns none of the capture's addresses, so its kernel drops every
# frame after libpcap has seen it.
#
# Usage (as root, after scripts/setup.sh):
#   bash benches/live-replay.sh
#   PACKETS=300000 RATES="50000 100000 200000 400000 top" EXWATCH_ARGS="--workers 2" \
#     bash benches/live-replay.sh
#   PACKETS=1000000 RATES=180000 bash benches/live-replay.sh   # CPU per Mpkt at a fixed rate
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/suricata-policy.sh
. benches/suricata-policy.sh

PACKETS=${PACKETS:-300000}
RATES=${RATES:-"50000 100000 200000 400000 top"}
EXWATCH_ARGS=${EXWATCH_ARGS:-}
METRICS_PORT=9911   # in the receiving namespace's own loopback: always free

if [ "$(id -u)" -ne 0 ]; then
  echo "live-replay: needs root (network namespaces, capture)" >&2
  exit 1
fi
for tool in ip tcpreplay curl; do
  command -v "$tool" >/dev/null || { echo "live-replay: $tool not found: run scripts/setup.sh" >&2; exit 1; }
done

cargo build --release --quiet
exwatch=$PWD/target/release/exwatch

work=$(mktemp -d)
tx="exwb$$a"   # namespace and veth end tcpreplay sends on
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

"$exwatch" generate "$work/replay.pcap" --packets "$PACKETS" 2>"$work/generate.txt"
cat "$work/generate.txt" >&2

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
if [ "${SURICATA:-1}" != 0 ] && command -v suricata >/dev/null; then
  have_suricata=1
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

results=()
suricata_results=()
for rate in $RATES; do
  if [ "$rate" = top ]; then speed=(--topspeed); label=topspeed; else speed=(--pps="$rate"); label="$rate"; fi

  # A fresh exwatch per rate, so every counter starts at zero.
  # shellcheck disable=SC2086
  ip netns exec "$rx" "${pin_tool[@]}" "$exwatch" live --interface "$rx" --eve-log "$work/eve.json" \
    --summary-json "$work/summary.json" --metrics "127.0.0.1:$METRICS_PORT" $EXWATCH_ARGS \
    2>"$work/exwatch.txt" &
  exwatch_pid=$!
  for _ in $(seq 100); do
    grep -q watching "$work/exwatch.txt" && scrape "$work/m" && break
    kill -0 "$exwatch_pid" 2>/dev/null || { cat "$work/exwatch.txt" >&2; exit 1; }
    sleep 0.1
  done

  cpu_before=$(cpu_seconds "$exwatch_pid")
  ip netns exec "$tx" "${pin_replay[@]}" tcpreplay --intf1="$tx" "${speed[@]}" "$work/replay.pcap" \
    >"$work/tcpreplay.txt" 2>&1 \
    || { cat "$work/tcpreplay.txt" >&2; exit 1; }
  sent=$(awk '/Successful packets:/ { print $3 }' "$work/tcpreplay.txt")
  reached=$(awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /^pps/) { printf "%.0f", $(i - 1); exit } }' \
    "$work/tcpreplay.txt")

  # Let the workers drain: wait until the counts stop moving (at most 10 s).
  last=-1
  for _ in $(seq 20); do
    now=$(seen)
    [ "$now" = "$last" ] && break
    last=$now
    sleep 0.5
  done
  # The drain loop's last second of waiting is idle time, spent alike by any tool.
  cpu=$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$exwatch_pid")" 'BEGIN { printf "%.3f", b - a }')
  scrape "$work/m"
  received=$(metric exwatch_packets_total "$work/m")
  kernel=$(metric exwatch_kernel_drops_total "$work/m")
  ifdrops=$(metric exwatch_interface_drops_total "$work/m")
  shed=$(metric exwatch_shed_frames_total "$work/m")

  kill -TERM "$exwatch_pid"
  status=0
  wait "$exwatch_pid" || status=$?
  exwatch_pid=""
  [ "$status" -eq 0 ] || echo "live-replay: exwatch exited with status $status at $label pps" >&2
  read_json=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packets"]["read"])' \
    "$work/summary.json" 2>/dev/null || echo "?")

  lost=$(( kernel + ifdrops + shed ))
  missing=$(( sent - received ))
  loss=$(awk -v m="$missing" -v s="$sent" 'BEGIN { printf "%.3f", s ? 100 * m / s : 0 }')
  per_mpkt=$(awk -v c="$cpu" -v r="$received" 'BEGIN { printf "%.2f", r ? c / (r / 1e6) : 0 }')
  results+=("$label $reached $sent $received $read_json $kernel $ifdrops $shed $lost $loss $per_mpkt")

  [ "$have_suricata" = 1 ] || continue
  # The same rate into Suricata: its capture counters from its last stats event.
  rm -rf "$work/suricata/log"
  mkdir -p "$work/suricata/log"
  ip netns exec "$rx" "${pin_tool[@]}" suricata -c "$work/suricata/suricata.yaml" \
    -S "$work/suricata/exchange.rules" -l "$work/suricata/log" --af-packet="$rx" \
    >"$work/suricata/out.txt" 2>&1 &
  suricata_pid=$!
  for _ in $(seq 300); do
    grep -q "Engine started" "$work/suricata/out.txt" 2>/dev/null && break
    kill -0 "$suricata_pid" 2>/dev/null || { cat "$work/suricata/out.txt" >&2; exit 1; }
    sleep 0.1
  done
  cpu_before=$(cpu_seconds "$suricata_pid")
  ip netns exec "$tx" "${pin_replay[@]}" tcpreplay --intf1="$tx" "${speed[@]}" "$work/replay.pcap" \
    >"$work/tcpreplay.txt" 2>&1 || { cat "$work/tcpreplay.txt" >&2; exit 1; }
  s_sent=$(awk '/Successful packets:/ { print $3 }' "$work/tcpreplay.txt")
  s_reached=$(awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /^pps/) { printf "%.0f", $(i - 1); exit } }' \
    "$work/tcpreplay.txt")
  # Drained once two stats events a second apart count the same packets.
  last=-1
  for _ in $(seq 20); do
    sleep 1.1
    now=$(suricata_capture)
    [ "$now" = "$last" ] && break
    last=$now
  done
  s_cpu=$(awk -v a="$cpu_before" -v b="$(cpu_seconds "$suricata_pid")" 'BEGIN { printf "%.3f", b - a }')
  read -r s_received s_drops <<<"$(suricata_capture)"
  kill -TERM "$suricata_pid"
  wait "$suricata_pid" 2>/dev/null || true
  suricata_pid=""
  # Its last word at exit ("device: IF: packets: N, drops: D") is the final count.
  final=$(sed -n 's/.*device: [^:]*: packets: \([0-9]*\), drops: \([0-9]*\).*/\1 \2/p' "$work/suricata/out.txt" | tail -n 1)
  [ -z "$final" ] || read -r s_received s_drops <<<"$final"
  s_loss=$(awk -v r="$s_received" -v d="$s_drops" -v s="$s_sent" 'BEGIN { printf "%.3f", s ? 100 * (s - r + d) / s : 0 }')
  s_per=$(awk -v c="$s_cpu" -v r="$s_received" 'BEGIN { printf "%.2f", r ? c / (r / 1e6) : 0 }')
  suricata_results+=("$label $s_reached $s_sent $s_received $s_drops $s_loss $s_per")
done

printf '\nexwatch live, replayed capture: %s packets (%s), %s cores, exwatch args: %s\n' \
  "$PACKETS" "$(tail -1 "$work/generate.txt" | sed 's/.*(\(.*\))/\1/')" "$(nproc)" "${EXWATCH_ARGS:-(defaults)}"
printf '%-10s %10s %9s %9s %9s %8s %8s %8s %8s %8s %13s\n' \
  "rate_pps" "reached" "sent" "received" "summary" "kernel" "ifdrop" "shed" "lost" "loss_%" "cpu_s/Mpkt"
best=none
best_reached=-1
for line in "${results[@]}"; do
  # shellcheck disable=SC2086
  set -- $line
  printf '%-10s %10s %9s %9s %9s %8s %8s %8s %8s %8s %13s\n' "$@"
  # Ranked by the rate reached: --topspeed may reach less than a fixed rate asked.
  if [ "$9" -eq 0 ] && [ "${10}" = "0.000" ] && [ "$2" -gt "$best_reached" ]; then
    best="$1 (reached $2 pps)"
    best_reached=$2
  fi
done
echo "highest rate with zero loss (no kernel/interface drop, nothing shed, every frame received): $best"

if [ "${#suricata_results[@]}" -gt 0 ]; then
  printf '\n%s, af-packet, 1 capture thread, pinned alike, the same replay:\n' "$(suricata -V 2>&1 | head -n 1)"
  printf '%-10s %10s %9s %9s %8s %8s %13s\n' rate_pps reached sent received drops loss_% cpu_s/Mpkt
  for line in "${suricata_results[@]}"; do
    # shellcheck disable=SC2086
    printf '%-10s %10s %9s %9s %8s %8s %13s\n' $line
  done
fi
