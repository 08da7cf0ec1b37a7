#!/usr/bin/env bash
# How far `exwatch analyze` is from just reading the capture, measured as the machine
# allows: interleaved runs (cat, exwatch, [baseline], cat, exwatch, ...) and medians,
# never a best-of-N, so drift on a shared machine hits every tool alike.
#
#   benches/against-cat.sh CAPTURE [RUNS] [-- ANALYZE-ARGS...]
#
# RUNS defaults to 7. ANALYZE-ARGS are added to `exwatch analyze CAPTURE --eve-log
# /dev/null --no-progress` (say `--workers 2`). Prints, per tool, the median wall time with
# its spread (min-max) and the median of its per-round ratio to cat.
#
# A run that fails (cat not zero; exwatch above 1, its status for "findings") ends the
# script at once with status 1 and one line naming the command and its status: a failed
# run is never timed.
#
# Environment:
#   EXWATCH=PATH           the binary (default target/release/exwatch, built if missing)
#   EXWATCH_BASELINE=PATH  a second binary in every round, for before/after comparisons
#   PAGE_CACHE=reread|keep how the capture is cached before the first round: reread (the
#                          default) drops its pages and reads it once, the state of a
#                          capture read from disk; keep reads it as it is cached. A file
#                          just written in small writes costs cat twice as much to read
#                          (benches/page-cache.sh).
#   JSON=FILE              also write every run to FILE: {"capture", "bytes", "page_cache",
#                          "runs", "cores", "analyze_args", "records": [{"tool", "round",
#                          "seconds", "x_cat"}], "tools": [{"tool", "median_seconds",
#                          "min_seconds", "max_seconds", "median_x_cat"}]} (x_cat is null
#                          for cat itself)
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
capture=${1:?usage: benches/against-cat.sh CAPTURE [RUNS] [-- ANALYZE-ARGS...]}
shift
runs=7
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  runs=$1
  shift
fi
case $runs in '' | *[!0-9]* | 0)
  echo "against-cat: RUNS must be a positive number, not '$runs'" >&2
  exit 2
  ;;
esac
[ "${1:-}" = "--" ] && shift
[ -r "$capture" ] || { echo "against-cat: cannot read $capture" >&2; exit 2; }
# shellcheck source=benches/page-cache.sh
. "$root/benches/page-cache.sh"
page_cache=${PAGE_CACHE:-reread}
page_cache_check "$page_cache"
exwatch=${EXWATCH:-$root/target/release/exwatch}
if [ ! -x "$exwatch" ]; then
  (cd "$root" && cargo build --release --quiet)
fi
tools=(cat exwatch)
[ -n "${EXWATCH_BASELINE:-}" ] && tools+=(baseline)
log=$(mktemp "${TMPDIR:-/tmp}/exwatch-against-cat.XXXXXX")
trap 'rm -f "$log"' EXIT

# Seconds one command takes, by the shell's own clock. $1 is the highest status that
# counts as success; a higher one ends the script, naming the command and its status.
seconds() {
  local max_ok=$1 start end rc=0
  shift
  start=$EPOCHREALTIME
  "$@" >/dev/null 2>"$log" || rc=$?
  end=$EPOCHREALTIME
  if [ "$rc" -gt "$max_ok" ]; then
    echo "against-cat: failed with status $rc: $*" >&2
    tail -n 5 "$log" >&2
    exit 1
  fi
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.6f\n", e - s }'
}

run() {
  case $1 in
    cat) seconds 0 cat "$capture" ;;
    exwatch) seconds 1 "$exwatch" analyze "$capture" --eve-log /dev/null --no-progress "${@:2}" ;;
    baseline) seconds 1 "$EXWATCH_BASELINE" analyze "$capture" --eve-log /dev/null --no-progress "${@:2}" ;;
  esac
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f-%.3f", lo, hi }'; }

page_cache_prepare "$capture" "$page_cache"
declare -A times ratios
records=()
for ((i = 1; i <= runs; i++)); do
  # $(...) runs in a subshell: its `exit 1` on a failed run must end this shell too.
  floor=$(run cat) || exit 1
  times[cat]+="$floor "
  records+=("cat $i $floor null")
  for tool in "${tools[@]:1}"; do
    t=$(run "$tool" "$@") || exit 1
    times[$tool]+="$t "
    r=$(awk -v t="$t" -v f="$floor" 'BEGIN { printf "%.4f", t / f }')
    ratios[$tool]+="$r "
    records+=("$tool $i $t $r")
  done
done

bytes=$(stat -c %s "$capture")
echo "against-cat: $capture ($((bytes / 1000000)) MB, page cache: $page_cache), $runs interleaved rounds, $(nproc) cores; analyze args: ${*:-(none)}"
summary=()
for tool in "${tools[@]}"; do
  t=$(tr ' ' '\n' <<<"${times[$tool]}" | grep . | median)
  s=$(tr ' ' '\n' <<<"${times[$tool]}" | grep . | spread)
  if [ "$tool" = cat ]; then
    printf '  %-9s median %8.3f s (%s)  (floor)\n' "$tool" "$t" "$s"
    summary+=("$tool $t ${s%-*} ${s#*-} null")
  else
    r=$(tr ' ' '\n' <<<"${ratios[$tool]}" | grep . | median)
    printf '  %-9s median %8.3f s (%s)  median %.2fx cat\n' "$tool" "$t" "$s" "$r"
    summary+=("$tool $t ${s%-*} ${s#*-} $r")
  fi
done

if [ -n "${JSON:-}" ]; then
  printf '%s\n' "${records[@]}" "--" "${summary[@]}" |
    python3 -c '
import json, sys
capture, size, page_cache, runs, cores, out = sys.argv[1:7]
num = lambda v: None if v == "null" else float(v)
records, tools, part = [], [], "records"
for line in sys.stdin.read().splitlines():
    if line == "--":
        part = "tools"
        continue
    f = line.split()
    if part == "records":
        records.append({"tool": f[0], "round": int(f[1]), "seconds": num(f[2]), "x_cat": num(f[3])})
    else:
        tools.append({"tool": f[0], "median_seconds": num(f[1]), "min_seconds": num(f[2]),
                      "max_seconds": num(f[3]), "median_x_cat": num(f[4])})
doc = {"capture": capture, "bytes": int(size), "page_cache": page_cache, "runs": int(runs),
       "cores": int(cores), "analyze_args": sys.argv[7:], "records": records, "tools": tools}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
' "$capture" "$bytes" "$page_cache" "$runs" "$(nproc)" "$JSON" "$@"
  echo "against-cat: every run written to $JSON" >&2
fi
