#!/usr/bin/env bash
# Runs a "before" and an "after" stt-perf binary alternately on one workload,
# keeping every run's output, for a side-by-side table of before/after medians
# and run-by-run ratios (see perf/README.md, "Before and after").
#
#   perf/compare.sh BEFORE AFTER WORKLOAD ROUNDS OUTDIR [FLAG...]
#
#   perf/compare.sh /work/before/stt-perf-8d611d2 target/release/stt-perf \
#       udp 9 /tmp/cmp-udp --runs 1 --seconds 2
#
# Each round runs BEFORE, then AFTER, as `BIN WORKLOAD FLAG... --no-out`
# (nothing is written to perf/RESULTS.md). OUTDIR, which must be empty or
# absent, gets NN-before.txt / NN-after.txt (each run's stdout: the tables),
# NN-before.err / NN-after.err (its stderr: the per-run lines) and meta.txt
# (binaries with their SHA-256, workload, flags, machine, start and end).
# Stops at the first run that fails.
set -euo pipefail

if [ $# -lt 5 ]; then
    sed -n '2,16s/^# \{0,1\}//p' "$0" >&2
    exit 2
fi
before=$1 after=$2 workload=$3 rounds=$4 out=$5
shift 5

fail() {
    echo "compare.sh: $*" >&2
    exit 2
}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || fail "ROUNDS must be a positive integer, not '$rounds'"
for bin in "$before" "$after"; do
    [ -x "$bin" ] || fail "not an executable: $bin"
done
for flag in "$@"; do
    case $flag in --out | --no-out) fail "$flag: the script runs with --no-out" ;; esac
done
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
    fail "$out is not empty (one series per folder)"
fi
mkdir -p "$out"

{
    echo "workload: $workload"
    echo "flags: $* --no-out"
    echo "rounds: $rounds (each: before, then after)"
    echo "before: $(realpath "$before") sha256 $(sha256sum <"$before" | cut -d' ' -f1)"
    echo "after: $(realpath "$after") sha256 $(sha256sum <"$after" | cut -d' ' -f1)"
    echo "machine: $(uname -srm), $(nproc) cores"
    echo "started: $(date -u +%FT%TZ)"
} >"$out/meta.txt"

for ((i = 1; i <= rounds; i++)); do
    for side in before after; do
        if [ "$side" = before ]; then bin=$before; else bin=$after; fi
        file=$(printf '%s/%02d-%s' "$out" "$i" "$side")
        echo "round $i/$rounds: $side" >&2
        if ! "$bin" "$workload" "$@" --no-out >"$file.txt" 2>"$file.err"; then
            echo "compare.sh: the $side run of round $i failed; see $file.err" >&2
            exit 1
        fi
    done
done
echo "finished: $(date -u +%FT%TZ)" >>"$out/meta.txt"
