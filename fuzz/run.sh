#!/usr/bin/env bash
# Fuzzes exwatch: builds the seed corpora from captures/ and rules/, then runs each
# cargo-fuzz target for a bounded time. Only stable Rust is needed (no sanitizer).
#
#   fuzz/run.sh                      every target, FUZZ_SECONDS (default 60) each
#   fuzz/run.sh read_capture         one target
#   FUZZ_SECONDS=600 fuzz/run.sh     longer runs
#
# Environment: FUZZ_SECONDS (time per target), FUZZ_TIMEOUT (seconds one input may take
# before it counts as a hang, default 10), FUZZ_RSS_MB (memory limit, default 2048).
# Crashes, hangs and out-of-memory inputs land in fuzz/artifacts/<target>/; minimise one
# with `cargo fuzz tmin <target> --sanitizer none <file>` and make it a regression test in
# tests/integration/fuzz.rs. The corpora (fuzz/corpus/) and artifacts are not committed.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$(pwd)
repo=$(cd .. && pwd)

seconds=${FUZZ_SECONDS:-60}
timeout=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
all_targets=(decode_frame read_capture parse_config)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz
fi

echo "== seed corpora from captures/ and rules/"
cargo run --quiet --release --example seed_corpus -- "$repo" "$fuzz_dir/corpus"

failed=()
mkdir -p artifacts
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target" "artifacts/$target"
    extra=()
    if [ -f "$target.dict" ]; then extra+=("-dict=$fuzz_dir/$target.dict"); fi
    log="artifacts/$target.log"
    status=0
    cargo fuzz run "$target" --sanitizer none "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout="$timeout" \
        -print_final_stats=1 "${extra[@]}" 2>&1 | tee "$log" || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    echo "== $target: ${runs:-?} executions (${speed:-?}/s) in ${seconds}s, exit $status"
    if [ "$status" -ne 0 ]; then failed+=("$target"); fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== FOUND PROBLEMS in: ${failed[*]}; inputs in fuzz/artifacts/<target>/:"
    for target in "${failed[@]}"; do ls -l "artifacts/$target"; done
    exit 1
fi
echo "== no crash, hang or out-of-memory input found"
