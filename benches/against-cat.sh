#!/usr/bin/env bash
# How far `exwatch analyze` is from just reading the capture, measured as the machine
# allows: interleaved runs (cat, exwatch, [baseline], cat, exwatch, ...) and medians,
# never a best-of-N, so drift on a shared machine hits every tool alike.
#
#   benches/against-cat.sh CAPTURE [RUNS] [-- ANALYZE-ARGS...]
#
# RUNS defaults to 7. ANALYZE-ARGS are added to `exwatch analyze CAPTURE --eve-log
# /dev/null --no-progress` (say `--workers 2`). EXWATCH=path picks the binary (default
# target/release/exwatch, built if missing); EXWATCH_BASELINE=path adds a second binary to
# every round, for before/after comparisons in the same run. Prints, per tool, the median
# wall time and the median of its per-round ratio to cat.
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
[ "${1:-}" = "--" ] && shift
[ -r "$capture" ] || { echo "against-cat: cannot read $capture" >&2; exit 2; }
exwatch=${EXWATCH:-$root/target/release/exwatch}
if [ ! -x "$exwatch" ]; then
  (cd "$root" && cargo build --release --quiet)
fi
tools=(cat exwatch)
[ -n "${EXWATCH_BASELINE:-}" ] && tools+=(baseline)

# Seconds one command takes, by the shell's own clock.
seconds() {
  local start end
  start=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || true
  end=$EPOCHREALTIME
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.6f\n", e - s }'
}

run() {
  case $1 in
    cat) seconds cat "$capture" ;;
    exwatch) seconds "$exwatch" analyze "$capture" --eve-log /dev/null --no-progress "${@:2}" ;;
    baseline) seconds "$EXWATCH_BASELINE" analyze "$capture" --eve-log /dev/null --no-progress "${@:2}" ;;
  esac
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

cat "$capture" >/dev/null # the page cache, warm
declare -A times ratios
for ((i = 0; i < runs; i++)); do
  floor=$(run cat)
  times[cat]+="$floor "
  for tool in "${tools[@]:1}"; do
    t=$(run "$tool" "$@")
    times[$tool]+="$t "
    ratios[$tool]+="$(awk -v t="$t" -v f="$floor" 'BEGIN { printf "%.4f", t / f }') "
  done
done

bytes=$(stat -c %s "$capture")
echo "against-cat: $capture ($((bytes / 1000000)) MB), $runs interleaved rounds, $(nproc) cores; analyze args: ${*:-(none)}"
for tool in "${tools[@]}"; do
  t=$(tr ' ' '\n' <<<"${times[$tool]}" | grep . | median)
  if [ "$tool" = cat ]; then
    printf '  %-9s median %8.3f s  (floor)\n' "$tool" "$t"
  else
    r=$(tr ' ' '\n' <<<"${ratios[$tool]}" | grep . | median)
    printf '  %-9s median %8.3f s  median %.2fx cat\n' "$tool" "$t" "$r"
  fi
done
