#!/usr/bin/env bash
# One `rpcnet-bench profile` workload with the load generator's process on
# CPU 0 and the server's process on CPU 1: each side on a core of its own,
# instead of both processes' threads sharing the machine's two cores.
# tokio sizes a default runtime to the CPUs its process may use, so each
# side then runs one worker unless RPCNET_BENCH_WORKERS says otherwise.
#
#   bench/pinned.sh SYSTEM WORKLOAD SECONDS     e.g. bench/pinned.sh rpcnet unary 4
#
# SYSTEM is rpcnet, tonic-tls or tonic-plain; WORKLOAD as for `profile`
# (unary, latency, stream, upload, ...). The runtime variables of
# docs/BENCHMARKS.md ("Where the time goes") apply as usual. Needs
# `taskset` (util-linux); builds rpcnet-bench (release) first if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p rpcnet-bench
exe="${CARGO_TARGET_DIR:-target}/release/rpcnet-bench"
RPCNET_BENCH_SERVER_CPUS=1 exec taskset -c 0 "$exe" profile "$@"
