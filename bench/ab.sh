#!/usr/bin/env bash
# Same-run A/B of the benchmark harness against an earlier commit: both
# builds' `rpcnet-bench` run the same workloads, alternated round by round
# on this machine, and the medians are compared, so a regression shows in
# one command instead of across runs on different days.
#
#   bench/ab.sh REV [ROUNDS] [SECONDS]      (defaults: 5 rounds of 2 s)
#
# REV is checked out in a worktree under target/ab/ and built with its own
# target directory (the first run builds it, a few minutes on 2 cores);
# this tree is built as usual. A workload REV's harness does not have is
# skipped. A run's figure is what it printed as "N calls/s" or "N msg/s"
# (the mean of such lines: a streaming workload prints one per stream).
# Each round runs both builds back to back, the order alternating from
# round to round; the table gives each side's median, the ratio of the
# medians, and the median of the rounds' own ratios with their range
# (pairs run a few seconds apart see the same machine, so that column is
# the steadier one on a noisy VM). Workloads:
#
#   unary        `profile rpcnet unary`      unary 16 B, c=64, one connection
#   stream       `profile rpcnet stream`     server streaming, 1 KiB messages
#   upload       `profile rpcnet upload`     client streaming, 1 KiB messages
#   routed-1     `profile-routing cluster`   ClusterClient → one worker, c=64
#   routed-2     `profile-routing cluster2`  ClusterClient → two workers, c=64
#   direct-1     `profile-routing direct`    RpcClient → that worker, c=64
#   typed        `profile rpcnet typed`      generated client, unary echo c=64
#   raw-echo     `profile rpcnet raw-echo`   RpcClient, the same echo
set -euo pipefail

rev=${1:?usage: bench/ab.sh REV [ROUNDS] [SECONDS]}
rounds=${2:-5}
seconds=${3:-2}
root=$(git rev-parse --show-toplevel)
cd "$root"
sha=$(git rev-parse --short "$rev^{commit}")
tree=$root/target/ab/$sha

if [ ! -d "$tree" ]; then
    git worktree add --detach "$tree" "$sha" >/dev/null
fi
echo "building $sha (target/ab/target) and this tree (target/) ..." >&2
CARGO_TARGET_DIR=$root/target/ab/target cargo build --quiet --release \
    --manifest-path "$tree/Cargo.toml" -p rpcnet-bench
cargo build --quiet --release -p rpcnet-bench
old_bin=$root/target/ab/$sha.rpcnet-bench
cp "$root/target/ab/target/release/rpcnet-bench" "$old_bin"
new_bin=$root/target/release/rpcnet-bench

workloads=(unary stream upload routed-1 routed-2 direct-1 typed raw-echo)
command_of() {
    case $1 in
        unary) echo "profile rpcnet unary $seconds" ;;
        stream) echo "profile rpcnet stream $seconds" ;;
        upload) echo "profile rpcnet upload $seconds" ;;
        routed-1) echo "profile-routing cluster $seconds" ;;
        routed-2) echo "profile-routing cluster2 $seconds" ;;
        direct-1) echo "profile-routing direct $seconds" ;;
        typed) echo "profile rpcnet typed $seconds" ;;
        raw-echo) echo "profile rpcnet raw-echo $seconds" ;;
    esac
}

# Whether the harness in tree $1 has the subcommand of $2 (an unknown
# subcommand would start the whole report instead) and, for `profile`,
# its workload (an unknown one would panic).
supports() {
    local subcommand workload
    read -r subcommand _ workload _ <<<"$(command_of "$2")"
    grep -q "Some(\"$subcommand\")" "$1/bench/src/main.rs" || return 1
    [ "$subcommand" != profile ] || grep -q "\"$workload\"" "$1/bench/src/main.rs"
}

# One run: the mean of the figures it printed ("N calls/s", "N msg/s"),
# or nothing when the build has no such workload.
figure() {
    local bin=$1 dir=$2 workload=$3
    supports "$dir" "$workload" || return 0
    # shellcheck disable=SC2046
    (cd "$dir" && timeout 120 "$bin" $(command_of "$workload") 2>&1) |
        awk '/^[0-9.]+ (calls|msg)\/s$/ { sum += $1; n++ } END { if (n) printf "%.0f\n", sum / n }' ||
        true
}

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
    for workload in "${workloads[@]}"; do
        supports "$tree" "$workload" || continue
        # The order alternates from round to round.
        if [ $((round % 2)) = 1 ]; then
            old=$(figure "$old_bin" "$tree" "$workload")
            new=$(figure "$new_bin" "$root" "$workload")
        else
            new=$(figure "$new_bin" "$root" "$workload")
            old=$(figure "$old_bin" "$tree" "$workload")
        fi
        echo "round $round $workload old: ${old:-skipped} new: ${new:-failed}" >&2
        # A workload the old build does not run is not compared.
        [ -n "$old" ] || continue
        echo "$workload old $old" >>"$results"
        if [ -n "$new" ]; then
            echo "$workload new $new" >>"$results"
            awk -v w="$workload" -v o="$old" -v n="$new" 'BEGIN { printf "%s ratio %.4f\n", w, n / o }' >>"$results"
        fi
    done
done

echo
echo "Same-run A/B: $sha (old) against $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + changes') (new), $rounds rounds of ${seconds} s, medians"
echo
echo "| workload | old | new | new / old | the rounds' new / old: median (range) |"
echo "|---|---:|---:|---:|---:|"
for workload in "${workloads[@]}"; do
    median() {
        awk -v w="$workload" -v side="$1" '$1 == w && $2 == side { print $3 }' "$results" | sort -g |
            awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
    }
    old=$(median old)
    new=$(median new)
    ratio=$(median ratio)
    range=$(awk -v w="$workload" '$1 == w && $2 == "ratio" { print $3 }' "$results" | sort -g |
        awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f–%.2f", lo, hi }')
    if [ -n "$old" ] && [ -n "$new" ]; then
        awk -v w="$workload" -v o="$old" -v n="$new" -v r="$ratio" -v g="$range" \
            'BEGIN { printf "| %s | %.0f | %.0f | %.2f× | %.2f× (%s) |\n", w, o, n, n / o, r, g }'
    elif [ -n "$old" ]; then
        echo "| $workload | $old | failed | |"
    fi
done
