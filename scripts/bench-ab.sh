#!/usr/bin/env bash
# Same-run A/B of the benchmark harness: the working tree against an earlier
# commit, on the same machine, interleaved so both see the same load.
#
#   scripts/bench-ab.sh REV [ROUNDS] [SECONDS]
#
# Builds `rpcnet-bench` (release) at REV in a temporary git worktree and in
# the working tree (one shared target directory, so dependencies build
# once), then runs `rpcnet-bench profile rpcnet <workload> SECONDS` for
# unary 16 B c=64, unary 16 B c=1 latency and server streaming, ROUNDS
# times each (default 3 rounds of 4 s), alternating old and new, and prints
# the median of each with the ratio new / old. Figures are for comparison
# in this run only; the full report is `cargo run --release -p rpcnet-bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-ab.sh REV [ROUNDS] [SECONDS]}
rounds=${2:-3}
seconds=${3:-4}
target=${CARGO_TARGET_DIR:-$PWD/target}
work=$(mktemp -d)
cleanup() {
  git worktree remove --force "$work/old" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add --detach "$work/old" "$rev" > /dev/null
(cd "$work/old" && CARGO_TARGET_DIR=$target cargo build --release -q -p rpcnet-bench)
cp "$target/release/rpcnet-bench" "$work/bench-old"
CARGO_TARGET_DIR=$target cargo build --release -q -p rpcnet-bench
cp "$target/release/rpcnet-bench" "$work/bench-new"

# The first number a profile run prints (calls/s or msg/s; for latency, calls/s then p50).
measure() { # binary workload -> "value [p50]"
  "$1" profile rpcnet "$2" "$seconds" 2>&1 | grep -E "calls/s|msg/s" | tail -1 |
    sed -E 's/^([0-9.]+) (calls|msg)\/s(, p50 ([0-9.]+) µs)?.*/\1 \4/'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '| workload | %s | working tree | new / old |\n|---|---:|---:|---:|\n' "$(git rev-parse --short "$rev")"
for workload in unary latency stream; do
  old=() new=()
  for _ in $(seq "$rounds"); do
    old+=("$(measure "$work/bench-old" "$workload")")
    new+=("$(measure "$work/bench-new" "$workload")")
  done
  for column in 1 2; do
    [ "$workload" != latency ] && [ "$column" = 2 ] && continue
    name=$workload
    [ "$workload" = unary ] && name="unary 16 B c=64 (calls/s)"
    [ "$workload" = latency ] && [ "$column" = 1 ] && name="unary 16 B c=1 (calls/s)"
    [ "$workload" = latency ] && [ "$column" = 2 ] && name="unary 16 B c=1 p50 (µs)"
    [ "$workload" = stream ] && name="server streaming 1 KiB (msg/s)"
    a=$(printf '%s\n' "${old[@]}" | awk -v c="$column" '{print $c}' | median)
    b=$(printf '%s\n' "${new[@]}" | awk -v c="$column" '{print $c}' | median)
    printf '| %s | %s | %s | %.2f× |\n' "$name" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print (a > 0 ? b / a : 0)}')"
  done
done
