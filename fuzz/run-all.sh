#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each, one after the other,
# starting from the committed seeds in fuzz/corpus-seed/<target>/.
#
#   fuzz/run-all.sh 60            # from the repository root or from fuzz/
#   JOBS=2 fuzz/run-all.sh 300    # two targets at a time (one core each)
#
# New corpus entries go to fuzz/corpus/<target>/ (not committed); crashes to
# fuzz/artifacts/<target>/. Exits non-zero if any target found a crash.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets a
# stable toolchain build with the sanitizer flags cargo-fuzz passes.
set -euo pipefail

seconds="${1:?usage: run-all.sh SECONDS}"
case "$seconds" in
    ''|*[!0-9]*) echo "SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
jobs="${JOBS:-1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export RUSTC_BOOTSTRAP=1
targets=(frame_decode handshake reassembly session_established cookie channel_chunks channel_pair token_parse token_gate)
cargo fuzz build

logs="fuzz/target/run-all-logs"
mkdir -p "$logs"
run_one() {
    local t="$1"
    mkdir -p "fuzz/corpus/$t"
    # -timeout: one input taking longer than 10 s is a hang; -rss_limit_mb
    # bounds memory, well above what the small reassembly limits allow.
    if cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/corpus-seed/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1; then
        echo "$t: ok   $(grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$t.log" | tail -1)"
    else
        echo "$t: FAILED, see $logs/$t.log and fuzz/artifacts/$t/"
        grep -m1 -A1 "panicked at" "$logs/$t.log" | sed 's/^/    /' || true
        return 1
    fi
}

status=0
pids=()
for t in "${targets[@]}"; do
    run_one "$t" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || status=1
done
exit "$status"
