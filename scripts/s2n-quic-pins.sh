#!/usr/bin/env bash
# Reports whether crates.io has an s2n-quic newer than the release that
# rpcnet's exact-version pins hold its users to. `src/udp.rs` drives
# s2n-quic's socket rings itself, so Cargo.toml pins s2n-quic-core and
# s2n-quic-platform (crates s2n-quic describes as internal) with `=`; every
# s2n-quic release pins its own versions of them, so a user cannot take a
# newer s2n-quic until rpcnet moves its pins.
#
# Informational only: always exits 0 (no network, no cargo, a format it
# does not understand: it says "could not check"). `.ci/run` runs it.
set -uo pipefail
cd "$(dirname "$0")/.."

pins=$(grep -E '^s2n-quic-(core|platform) *=' Cargo.toml | grep -oE '"=[0-9.]+"' | tr -d '"=' | sort -u | paste -sd, -)
held=$(awk '/^name = "s2n-quic"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ -z "$held" ] || [ -z "$pins" ]; then
    echo "s2n-quic pins: could not check (no pins or no s2n-quic in Cargo.lock)"
    exit 0
fi

newest=$(timeout 30 cargo search s2n-quic --limit 1 2>/dev/null \
    | sed -nE 's/^s2n-quic = "([0-9][0-9.]*)".*/\1/p' | head -n 1)
if [ -z "$newest" ]; then
    echo "s2n-quic pins: could not check (crates.io unreachable); held at s2n-quic $held by the =$pins pins"
    exit 0
fi

if [ "$newest" = "$held" ]; then
    echo "s2n-quic pins: up to date (s2n-quic $held is the newest; s2n-quic-core/-platform pinned =$pins)"
elif [ "$(printf '%s\n%s\n' "$held" "$newest" | sort -V | tail -n 1)" = "$newest" ]; then
    echo "s2n-quic pins: s2n-quic $newest is published, but the =$pins pins of s2n-quic-core/-platform in Cargo.toml hold rpcnet's users at s2n-quic $held: move the pins to the versions s2n-quic $newest depends on and rerun the tests"
else
    echo "s2n-quic pins: could not check (crates.io reports $newest, older than $held)"
fi
exit 0
