#!/usr/bin/env bash
# Installs the programs some tests use from Debian's packages:
#   promtool (package `prometheus`): checks /metrics with Prometheus's own
#            exposition-format parser;
#   chromium: opens the admin status page headless, reads its DOM after
#            its scripts ran and writes a screenshot.
# Idempotent: does nothing when both are on PATH. Without root or apt-get
# it says so and exits 0; the tests that need a missing program then skip
# with a message naming it. `.ci/run` runs it before `cargo test`.
set -uo pipefail

missing=()
command -v promtool > /dev/null 2>&1 || missing+=(prometheus)
command -v chromium > /dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
    echo "test dependencies: promtool and chromium present"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null 2>&1; then
    echo "test dependencies: not installing ${missing[*]} (needs root and apt-get); the tests that use them will skip"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# The prometheus package's service is not wanted: tell invoke-rc.d not to
# start it (policy-rc.d exit 101), restoring any policy that was there.
policy=/usr/sbin/policy-rc.d
saved=
if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
fi
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod +x "$policy"
restore() {
    if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore EXIT
if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null; then
    echo "test dependencies: installed ${missing[*]}"
else
    echo "test dependencies: apt-get could not install ${missing[*]}; the tests that use them will skip"
fi
exit 0
