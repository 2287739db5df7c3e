#!/usr/bin/env bash
# What CI runs for the cross builds and packages (issue 7), as root on a
# Debian 12 runner:
#   1. release builds for aarch64-musl, armv7-musleabihf and mipsel-musl;
#   2. a smoke test of each under qemu-user (--version, config check, and a
#      discover against snmpsimd on loopback);
#   3. the amd64 .deb (x86_64-musl binary): built, installed with dpkg -i,
#      checked (config check /etc/cpe-agent/agent.toml, conffile mode, user),
#      removed and purged.
# Prints the time of each phase. Cache between CI runs: ~/.cargo/registry,
# ~/.cargo/git, ~/.cargo/bin (cargo-zigbuild), ~/.rustup (the nightly with
# rust-src), ~/.cache/cpe-agent-cross (zig, when pip needed a venv) and
# $CARGO_TARGET_DIR. The cross targets use their own triples, so the main
# test build's target/ can be shared safely (and is the default).
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/lib.sh

targets=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl)
[ -n "${CI_CROSS_TARGETS:-}" ] && read -r -a targets <<<"$CI_CROSS_TARGETS"

t0=$(date +%s)
phases=()
phase() {
    local name=$1 start end
    shift
    echo "######## $name" >&2
    start=$(date +%s)
    "$@" || die "CI phase '$name' failed"
    end=$(date +%s)
    phases+=("$name:$((end - start))")
}

phase "build ${targets[*]}" bash cross/build.sh "${targets[@]}"
phase "smoke under qemu" bash cross/smoke.sh "${targets[@]}"
phase "amd64 deb: build + dpkg -i check" bash cross/deb-check.sh

echo >&2
for p in "${phases[@]}"; do
    printf '%-70s %5ss\n' "${p%:*}" "${p##*:}" >&2
done
printf '%-70s %5ss\n' "total" "$(($(date +%s) - t0))" >&2
