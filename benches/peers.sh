#!/usr/bin/env bash
# Peers: how far exwatch and other packet tools are from just reading the capture.
#
#   benches/peers.sh [PACKETS]
#
# Builds exwatch (release), generates a synthetic capture of PACKETS packets with
# `exwatch generate --seed 1` (default 1,000,000, a few minutes in all on 2 cores; also
# EXWATCH_BENCH_PACKETS, as for `cargo bench --bench replay`, which shares the cached file
# under target/bench-data/), caches it as a file read from disk is (PAGE_CACHE), then times each tool on the same file
# in interleaved rounds (cat, tcpdump, exwatch, ..., cat, tcpdump, ...: EXWATCH_PEERS_RUNS
# rounds, default 5, so drift on a shared machine hits every tool alike) and prints one
# table with each tool's median wall time and the median of its per-round ratio to
# `cat FILE > /dev/null`, the floor no analysis can beat. Beside each median wall time: its
# spread (min-max over the rounds), the CPU-seconds the tool used (user + system, all
# threads, from /usr/bin/time) with their spread, and its peak RSS (largest of the rounds).
#
# EXWATCH_BENCH_BULK=N generates with `exwatch generate --bulk N` (larger frames: N=3 gives
# about 670 bytes a frame against 470 by default), as `cargo bench --bench replay` does.
# EXWATCH_BENCH_POOL=N times a busy port's capture instead (`exwatch generate --pool N`: each
# packet from one of N concurrently open flows), the file `cargo bench` uses for the same N.
#
# Peers are installed from the distribution's packages when missing (apt-get; sudo when not
# root); one that cannot be installed or fails is listed as such, not fatal.
#   EXWATCH_PEERS_INSTALL=0    install nothing, time only what is already there
#   EXWATCH_PEERS_BACKPORTS=0  on Debian, never take Suricata from <release>-backports
#                              (Debian 12 has it only there; see install_suricata)
#   RUNS=N                     rounds (the same as EXWATCH_PEERS_RUNS; default 5)
#   SKIP="suricata ndpiReader" peers left out (not installed, not timed): any of tcpdump,
#                              exwatch, suricata, ndpiReader, tshark; cat, the floor, stays
#   PAGE_CACHE=reread|keep     how the capture is cached before the first round: reread (the
#                              default) drops its pages and reads it once, the state of a
#                              capture read from disk; keep reads it as it is cached. A file
#                              just written in small writes costs cat twice as much to read
#                              (benches/page-cache.sh).
#   JSON=FILE                  also write every run to FILE: {"script", "capture", "packets",
#                              "bytes", "page_cache", "runs", "cores", "cpu_model",
#                              "records": [one per round and tool: "tool", "round", "wall_seconds",
#                              "user_seconds", "sys_seconds", "cpu_seconds", "peak_rss_kib",
#                              "x_cat"], "tools": [one per row: "tool", "version", "command",
#                              "status" ("ok", "failed (exit N)", "not available",
#                              "skipped"), "median_wall_seconds", "min_wall_seconds",
#                              "max_wall_seconds", "median_cpu_seconds", "min_cpu_seconds",
#                              "max_cpu_seconds", "max_peak_rss_kib", "median_x_cat"]}
#                              (null where a row has no run; x_cat null for cat itself)
#   CAPTURE=FILE               time this capture instead of generating one (PACKETS and the
#                              shape variables are then ignored)
#   EXWATCH=PATH               the exwatch binary to time (default: built with cargo, release)
set -euo pipefail

# Floats below come from awk and bash's $EPOCHREALTIME, both of which follow the locale's
# decimal separator: pin it to '.'.
export LC_ALL=C

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/suricata-policy.sh
. "$root/benches/suricata-policy.sh"
# shellcheck source=benches/page-cache.sh
. "$root/benches/page-cache.sh"
packets=${1:-${EXWATCH_BENCH_PACKETS:-1000000}}
bulk=${EXWATCH_BENCH_BULK:-0}
pool=${EXWATCH_BENCH_POOL:-0}
runs=${RUNS:-${EXWATCH_PEERS_RUNS:-5}}
install=${EXWATCH_PEERS_INSTALL:-1}
page_cache=${PAGE_CACHE:-reread}
page_cache_check "$page_cache"
seed=1
case $packets in '' | *[!0-9]*)
  echo "peers: PACKETS must be a number, not '$packets'" >&2
  exit 2
  ;;
esac
case $runs in '' | *[!0-9]* | 0)
  echo "peers: RUNS must be a positive number, not '$runs'" >&2
  exit 2
  ;;
esac
skip=" "
for peer in ${SKIP:-}; do
  case $peer in
    tcpdump | exwatch | suricata | ndpiReader | tshark) skip+="$peer " ;;
    *)
      echo "peers: SKIP: unknown peer '$peer' (one of tcpdump exwatch suricata ndpiReader tshark)" >&2
      exit 2
      ;;
  esac
done
# skipped PEER: whether SKIP names it.
skipped() { [[ $skip == *" $1 "* ]]; }
if [ -n "${CAPTURE:-}" ] && [ ! -r "$CAPTURE" ]; then
  echo "peers: CAPTURE: cannot read '$CAPTURE'" >&2
  exit 2
fi
[ -x /usr/bin/time ] || { echo "peers: /usr/bin/time not found: run scripts/setup.sh" >&2; exit 1; }
case $bulk in '' | *[!0-9]*)
  echo "peers: EXWATCH_BENCH_BULK must be a number, not '$bulk'" >&2
  exit 2
  ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/exwatch-peers.XXXXXX")
partial=""
# The temp dir holds every log, Suricata's config and output; a half-written capture
# must not survive an interrupted generation, or the next run would take it as complete.
cleanup() {
  rm -rf "$tmp"
  if [ -n "$partial" ]; then rm -f "$partial"; fi
}
trap cleanup EXIT

say() { echo "peers: $*" >&2; }

# --- Installing peers -------------------------------------------------------------------

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    return 1
  fi
}

apt_updated=0
# apt_install PACKAGE...: quiet, non-interactive; fails softly (the caller then reports the
# tool as not available), with apt's output kept in the temp dir.
apt_install() {
  [ "$install" = 1 ] && command -v apt-get >/dev/null || return 1
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    as_root apt-get update -qq >>"$tmp/apt.log" 2>&1 || return 1
    apt_updated=1
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >>"$tmp/apt.log" 2>&1
}

# need COMMAND PACKAGE: the command is on PATH afterwards, or this fails.
need() {
  command -v "$1" >/dev/null && return 0
  apt_install "$2" || true
  command -v "$1" >/dev/null
}

# Debian 12 (bookworm) has no suricata in main, only in bookworm-backports, and that build
# needs the backported libhtp2, so a plain install fails even where backports is already
# configured. Here the backports suite is added for this one install only: apt reads a
# copy of the system's sources plus one backports line, with its lists in the temp dir,
# so the machine's apt configuration is left as it was.
# The mirror the machine's own apt sources take the main suite from: the first URI of a
# deb822 stanza (*.sources) or a one-line `deb` entry (*.list) that lists $1.
debian_mirror() {
  local codename=$1
  cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$codename" '
    /^[[:space:]]*$/ { if (uri != "" && found) { print uri; exit } uri = ""; found = 0; next }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
    END { if (uri != "" && found) print uri }' | head -n 1 | grep . && return 0
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$codename" '
    $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == suite) { print $i; exit } } }'
}

install_suricata() {
  apt_install suricata && return 0
  [ "${EXWATCH_PEERS_BACKPORTS:-1}" = 1 ] && [ "$install" = 1 ] && [ -r /etc/os-release ] || return 1
  local id codename
  id=$(. /etc/os-release && echo "${ID:-}")
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ "$id" = debian ] && [ -n "$codename" ] || return 1
  local mirror
  mirror=$(debian_mirror "$codename") && [ -n "$mirror" ] || return 1
  local d="$tmp/apt-backports"
  mkdir -p "$d/parts" "$d/lists/partial"
  cp /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources "$d/parts/" 2>/dev/null || true
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename-backports main" \
    >"$d/parts/$codename-backports.list"
  local opts=(-o "Dir::Etc::sourceparts=$d/parts" -o "Dir::State::Lists=$d/lists"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
  say "suricata: trying $codename-backports"
  as_root apt-get "${opts[@]}" update -qq >>"$tmp/apt.log" 2>&1 || return 1
  # -t, not suricata/<suite>: its dependencies must come from backports too.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -qq \
    --no-install-recommends -t "$codename-backports" suricata >>"$tmp/apt.log" 2>&1
}

# --- Build and capture -------------------------------------------------------------------

target=${CARGO_TARGET_DIR:-$root/target}
exwatch=${EXWATCH:-$target/release/exwatch}
if [ -z "${EXWATCH:-}" ]; then
  command -v cargo >/dev/null || { say "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
  say "cargo build --release"
  (cd "$root" && cargo build --release --quiet)
fi

# Same name and content as benches/replay.rs's capture (same generator, options and seed),
# so `cargo bench` and this script measure the same file and generate it only once.
file=$target/bench-data/org-seed$seed-$packets.pcap
[ "$bulk" = 0 ] || file=$target/bench-data/org-seed$seed-$packets-bulk$bulk.pcap
shape=(--bulk "$bulk")
if [ "$pool" != 0 ]; then
  file=$target/bench-data/pool-seed$seed-$packets-$pool.pcap
  shape=(--pool "$pool")
fi
if [ -n "${CAPTURE:-}" ]; then
  file=$CAPTURE
elif [ ! -f "$file" ]; then
  mkdir -p "$(dirname "$file")"
  partial=$file.partial
  say "generating $file"
  "$exwatch" generate "$partial" --packets "$packets" --seed "$seed" "${shape[@]}" 2>>"$tmp/generate.log"
  mv "$partial" "$file"
  partial=""
fi
bytes=$(stat -c %s "$file")

# Install the peers now, so that apt's work is done before anything is timed.
have_tcpdump=0 have_tshark=0 have_ndpi=0 have_suricata=0
skipped tcpdump || ! need tcpdump tcpdump || have_tcpdump=1
skipped tshark || ! need tshark tshark || have_tshark=1
skipped ndpiReader || ! need ndpiReader libndpi-bin || have_ndpi=1
if ! skipped suricata && { command -v suricata >/dev/null || install_suricata; }; then
  command -v suricata >/dev/null && have_suricata=1
fi

# The generator completes the flows still open at the end, so the file holds a few more
# packets than asked: count them (capinfos comes with tshark), else take exwatch's count.
count=""
if command -v capinfos >/dev/null; then
  count=$(capinfos -M -c "$file" 2>/dev/null | awk -F': *' '/Number of packets/ { print $2 }' || true)
fi

# Warm the page cache: every tool then reads from memory, so the table compares parsing
# and analysis, not the disk. Warn when the file cannot stay cached.
say "caching the capture (page cache: $page_cache)"
page_cache_prepare "$file" "$page_cache"
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo 2>/dev/null || echo 0)
if [ -n "$avail_kb" ] && [ "$avail_kb" -gt 0 ] && [ $((bytes / 1024)) -gt $((avail_kb / 2)) ]; then
  say "warning: the capture is more than half the available memory; runs may read from disk"
fi

# --- Timing --------------------------------------------------------------------------------

# One row per tool, in the order added; `times` holds each round's wall seconds, `cpus`
# its CPU-seconds and `rsss` its peak RSS in KiB. Every run is also a line of
# $tmp/records.tsv: row, round, wall, user, system seconds, peak RSS.
names=() versions=() maxok=() cmds=() times=() cpus=() rsss=() failed=()
: >"$tmp/records.tsv"

# row NAME VERSION MAX-OK-STATUS COMMAND...: a tool to time. A status above MAX-OK-STATUS
# (exwatch exits 1 when it has findings) makes the row "failed", with the end of its stderr.
row() {
  names+=("$1") versions+=("$2") maxok+=("$3")
  shift 3
  cmds+=("$(printf '%q ' "$@")") times+=("") cpus+=("") rsss+=("") failed+=("")
}

# Runs every row once per round, in order, stdout to /dev/null (as for the `cat` floor)
# and stderr to the row's log in the temp dir (so no terminal slows it).
time_rows() {
  local round i rc start end
  for ((round = 1; round <= runs; round++)); do
    say "round $round of $runs"
    for i in "${!names[@]}"; do
      [ -n "${cmds[$i]}" ] && [ -z "${failed[$i]}" ] || continue
      rc=0
      start=$EPOCHREALTIME
      eval "/usr/bin/time -f '%U %S %M' -o \"\$tmp/time-$i\" ${cmds[$i]}" >/dev/null 2>"$tmp/run-$i.log" || rc=$?
      end=$EPOCHREALTIME
      if [ "$rc" -gt "${maxok[$i]}" ]; then
        say "${names[$i]} failed with status $rc; the end of its output:"
        tail -n 5 "$tmp/run-$i.log" >&2
        failed[i]="failed (exit $rc)"
        continue
      fi
      local wall user sys rss
      wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
      # time's last line is the format's: a line before it tells of a non-zero exit.
      read -r user sys rss < <(tail -n 1 "$tmp/time-$i")
      times[i]="${times[$i]} $wall"
      cpus[i]="${cpus[$i]} $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
      rsss[i]="${rsss[$i]} $rss"
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$round" "$wall" "$user" "$sys" "$rss" >>"$tmp/records.tsv"
    done
  done
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# "min-max" of the numbers read.
spread() { tr ' ' '\n' | grep . | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }

# The median of row $1's per-round ratio to the floor's time in the same round.
median_ratio() {
  paste -d ' ' <(tr ' ' '\n' <<<"${times[0]}" | grep .) <(tr ' ' '\n' <<<"${times[$1]}" | grep .) |
    awk 'NF == 2 { print $2 / $1 }' | tr '\n' ' ' | median
}

# unavailable NAME WHY: a row without a time.
unavailable() {
  names+=("$1") versions+=("-") maxok+=(0) cmds+=("") times+=("") cpus+=("") rsss+=("") failed+=("$2")
}

exwatch_lines=() exwatch_findings="" suricata_alerts=""
cores=$(nproc)
# Other work on the machine shows up in every row: record how busy it was.
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo '?')

# Every ratio is to this row.
row "cat (floor)" "$(cat --version | head -n 1)" 0 cat "$file"

if skipped tcpdump; then
  unavailable tcpdump skipped
elif [ "$have_tcpdump" = 1 ]; then
  row "tcpdump" "$(tcpdump --version 2>&1 | head -n 1)" 0 tcpdump -r "$file" -w /dev/null
else
  unavailable tcpdump "not available"
fi

exwatch_version="$("$exwatch" --version) ($(git -C "$root" describe --always --dirty 2>/dev/null || echo 'no git'))"
# The default is one worker per core but the reader's (at least one).
if skipped exwatch; then
  unavailable exwatch skipped
else
  row "exwatch 1 worker$([ "$cores" -le 2 ] && echo ' (default)')" "$exwatch_version" 1 \
    "$exwatch" analyze "$file" --eve-log /dev/null --no-progress --workers 1
  if [ "$cores" -gt 1 ]; then
    row "exwatch $cores workers" "$exwatch_version" 1 \
      "$exwatch" analyze "$file" --eve-log /dev/null --no-progress --workers "$cores"
  fi
fi

# Suricata with a minimal config: a handful of port rules standing for the Exchange
# policy's findings (one alert per TCP connection attempt, as exwatch judges once per
# flow), the single runmode (one packet thread), and EVE either off or writing alerts.
if skipped suricata; then
  unavailable suricata skipped
elif [ "$have_suricata" = 1 ]; then
  sdir=$tmp/suricata
  mkdir -p "$sdir/log"
  for eve in no yes; do
    {
      printf '%%YAML 1.1\n---\n'
      suricata_vars
      cat <<EOF
runmode: single
stats:
  enabled: no
outputs:
  - eve-log:
      enabled: $eve
      filetype: regular
      filename: eve.json
      types:
        - alert
logging:
  default-log-level: notice
  outputs:
    - console:
        enabled: yes
EOF
    } >"$sdir/eve-$eve.yaml"
  done
  suricata_rules >"$sdir/exchange.rules"
  suricata_version=$(suricata -V 2>&1 | sed -n 's/.*\(Suricata version [^ ]*\).*/\1/p')
  # --init-errors-fatal: a rule that does not load must fail the row, not vanish silently.
  for eve in no yes; do
    label="suricata EVE off"
    [ "$eve" = yes ] && label="suricata EVE alerts"
    row "$label" "$suricata_version" 0 suricata -c "$sdir/eve-$eve.yaml" -S "$sdir/exchange.rules" \
      -l "$sdir/log" --runmode single --init-errors-fatal -r "$file"
  done
else
  unavailable suricata "not available"
fi

if skipped ndpiReader; then
  unavailable ndpiReader skipped
elif [ "$have_ndpi" = 1 ]; then
  # -q: no per-flow dump at the end; a file given to -i is read offline, once.
  ndpi_version=$(ndpiReader -h 2>&1 | sed -n 's/.*Welcome to \(nDPI [0-9.]*\).*/\1/p' || true)
  row "ndpiReader" "${ndpi_version:-nDPI}" 0 ndpiReader -q -i "$file"
else
  unavailable ndpiReader "not available"
fi

if skipped tshark; then
  unavailable tshark skipped
elif [ "$have_tshark" = 1 ]; then
  row "tshark conv,tcp" "$(tshark --version 2>/dev/null | head -n 1 | sed 's/ (Git.*//')" 0 \
    tshark -q -z conv,tcp -r "$file"
else
  unavailable tshark "not available"
fi

time_rows
[ -n "${times[0]}" ] || { say "cannot read $file"; exit 1; }
# EVE appends, so the alerts of all the runs are there: a check that the rules fire.
if [ "$have_suricata" = 1 ] && [ -f "$tmp/suricata/log/eve.json" ]; then
  suricata_alerts=$(($(grep -c '"event_type":"alert"' "$tmp/suricata/log/eve.json" || true) / runs))
fi
for i in "${!names[@]}"; do
  # exwatch prints its own packet count and throughput: keep the last run's for the report.
  if [[ ${names[$i]} == exwatch* ]] && [ -n "${times[$i]}" ] && [ -z "${failed[$i]}" ]; then
    [ -n "$count" ] || count=$(awk '/^packets: [0-9]+ read/ { print $2 }' "$tmp/run-$i.log")
    exwatch_lines+=("${names[$i]}: $(grep -m1 '^throughput:' "$tmp/run-$i.log" || echo 'no throughput line')")
    exwatch_findings=$(grep -m1 '^findings:' "$tmp/run-$i.log" || true)
  fi
done

# --- Report --------------------------------------------------------------------------------

printf '\npeers: %s packets, %s bytes (%.1f MiB, %.0f B/packet), %s\n' \
  "${count:-?}" "$bytes" "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" \
  "$(awk -v b="$bytes" -v n="${count:-0}" 'BEGIN { print n ? b / n : 0 }')" "$file"
printf 'machine: %s cores (nproc), %s, %s GiB RAM, %s, load average %s before timing, %s after\n' "$cores" \
  "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo '?')" \
  "$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo 2>/dev/null || echo '?')" \
  "$(uname -sr)" "$load_before" "$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo '?')"
printf 'command: %s%s%s%s %s   (medians of %s interleaved rounds, wall clock, page cache warm: %s)\n\n' \
  "${EXWATCH_BENCH_PACKETS:+EXWATCH_BENCH_PACKETS=$EXWATCH_BENCH_PACKETS }" \
  "${EXWATCH_BENCH_BULK:+EXWATCH_BENCH_BULK=$EXWATCH_BENCH_BULK }" \
  "${EXWATCH_BENCH_POOL:+EXWATCH_BENCH_POOL=$EXWATCH_BENCH_POOL }" "$0" "$*" "$runs" "$page_cache"

printf '%-28s %9s %15s %8s %15s %9s %12s %9s %9s  %s\n' tool seconds "spread (s)" cpu_s "cpu spread" \
  rss_MiB packets/s MB/s "x cat" version
for i in "${!names[@]}"; do
  if [ -n "${failed[$i]}" ] || [ -z "${times[$i]}" ]; then
    printf '%-28s %9s %15s %8s %15s %9s %12s %9s %9s  %s\n' "${names[$i]}" - - - - - - - - "${failed[$i]:-no time}"
    continue
  fi
  awk -v name="${names[$i]}" -v s="$(median <<<"${times[$i]}")" -v n="${count:-0}" -v b="$bytes" \
    -v sp="$(spread <<<"${times[$i]}")" -v c="$(median <<<"${cpus[$i]}")" -v cp="$(spread <<<"${cpus[$i]}")" \
    -v m="$(tr ' ' '\n' <<<"${rsss[$i]}" | grep . | sort -n | tail -n 1)" \
    -v r="$(median_ratio "$i")" -v v="${versions[$i]}" 'BEGIN {
      printf "%-28s %9.3f %15s %8.2f %15s %9.1f %12s %9.1f %9.2f  %s\n", name, s, sp, c, cp, m / 1024,
        (n ? sprintf("%.0f", n / s) : "?"), b / s / 1e6, r, v
    }'
done
echo "(seconds: median wall time; cpu_s: median user + system CPU-seconds; spreads are min-max over the"
echo " rounds; rss_MiB: the largest peak resident set of the rounds)"

if [ -n "${JSON:-}" ]; then
  for i in "${!names[@]}"; do
    status=ok
    [ -z "${failed[$i]}" ] || status=${failed[$i]}
    printf '%s\t%s\t%s\t%s\n' "${names[$i]}" "${versions[$i]}" "${cmds[$i]}" "$status"
  done >"$tmp/tools.tsv"
  python3 - "$tmp/tools.tsv" "$tmp/records.tsv" "$JSON" "$file" "${count:-}" "$bytes" "$page_cache" "$runs" "$cores" \
    "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo '?')" <<'PYTHON'
import json, statistics, sys

tools_tsv, records_tsv, out, capture, count, size, page_cache, runs, cores, cpu_model = sys.argv[1:11]
rows = [line.rstrip("\n").split("\t") for line in open(tools_tsv)]
runs_of = {}
for line in open(records_tsv):
    i, rnd, wall, user, system, rss = line.split()
    runs_of.setdefault(int(i), {})[int(rnd)] = (float(wall), float(user), float(system), int(rss))
floor = runs_of.get(0, {})
records, tools = [], []
for i, (name, version, command, status) in enumerate(rows):
    mine = runs_of.get(i, {})
    ratios = []
    for rnd in sorted(mine):
        wall, user, system, rss = mine[rnd]
        x_cat = None
        if i != 0 and rnd in floor and floor[rnd][0] > 0:
            x_cat = round(wall / floor[rnd][0], 4)
            ratios.append(x_cat)
        records.append({"tool": name, "round": rnd, "wall_seconds": wall, "user_seconds": user,
                        "sys_seconds": system, "cpu_seconds": round(user + system, 2),
                        "peak_rss_kib": rss, "x_cat": x_cat})
    walls = [r[0] for r in mine.values()]
    cpu = [round(r[1] + r[2], 2) for r in mine.values()]
    pick = lambda f, v: f(v) if v else None
    tools.append({"tool": name, "version": version, "command": command.strip(), "status": status,
                  "median_wall_seconds": pick(lambda v: round(statistics.median(v), 4), walls),
                  "min_wall_seconds": pick(min, walls), "max_wall_seconds": pick(max, walls),
                  "median_cpu_seconds": pick(lambda v: round(statistics.median(v), 4), cpu),
                  "min_cpu_seconds": pick(min, cpu), "max_cpu_seconds": pick(max, cpu),
                  "max_peak_rss_kib": pick(max, [r[3] for r in mine.values()]),
                  "median_x_cat": pick(lambda v: round(statistics.median(v), 4), ratios)})
doc = {"script": "peers", "capture": capture, "packets": int(count) if count else None,
       "bytes": int(size), "page_cache": page_cache, "runs": int(runs), "cores": int(cores),
       "cpu_model": cpu_model,
       "records": records, "tools": tools}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PYTHON
  say "every run written to $JSON"
fi

echo
echo "commands (stdout to /dev/null, stderr to a log; temp files are written by $0), every run's seconds:"
for i in "${!names[@]}"; do
  [ -n "${cmds[$i]}" ] || continue
  printf '  %-28s %s\n  %-28s runs: %s\n' "${names[$i]}" "${cmds[$i]}" "" "${times[$i]# }"
done
if [ "${#exwatch_lines[@]}" -gt 0 ]; then
  echo "exwatch's own summary line, last run (time inside the process):"
  printf '  %s\n' "${exwatch_lines[@]}"
fi
[ -z "$exwatch_findings" ] || echo "exwatch $exwatch_findings"
[ -z "$suricata_alerts" ] || echo "suricata: $suricata_alerts alerts per run from the port rules above"
