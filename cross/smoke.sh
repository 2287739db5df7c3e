#!/usr/bin/env bash
# Smoke test of cross-built binaries under qemu-user, on loopback only:
#   cpe-agent --version
#   cpe-agent config check config/agent.toml
#   cpe-agent discover --target 127.0.0.1:PORT --json   against a private snmpsimd
# and checks that discover names the device's kind.
#
#   cross/smoke.sh aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf ...
#
# The binaries are $CARGO_TARGET_DIR/<target>/release/cpe-agent (cross/build.sh).
# Environment: SMOKE_RECORDING (default tests/data/soho-router.snmprec) and
# SMOKE_KIND (the kind it must be classified as, default "router").
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/lib.sh

[ $# -gt 0 ] || die "usage: cross/smoke.sh TARGET..."
target_dir=$(cross_target_dir)
recording=${SMOKE_RECORDING:-tests/data/soho-router.snmprec}
kind=${SMOKE_KIND:-router}
[ -f "$recording" ] || die "no recording $recording"

pkgs=(snmpsimd:snmpsim snmpget:snmp ss:iproute2)
for t in "$@"; do
    q=$(qemu_for "$t")
    [ -n "$q" ] && pkgs+=("$q:qemu-user")
    [ -x "$target_dir/$t/release/cpe-agent" ] ||
        die "$target_dir/$t/release/cpe-agent missing: run cross/build.sh $t first"
done
ensure_packages "${pkgs[@]}"
# Debian 13 split the dynamic qemu-user; qemu-user-static has the same programs
# as qemu-*-static.
for t in "$@"; do
    q=$(qemu_for "$t")
    if [ -n "$q" ] && ! command -v "$q" >/dev/null 2>&1 && ! command -v "$q-static" >/dev/null 2>&1; then
        apt_install qemu-user-static
    fi
done

work=$(mktemp -d /tmp/cpe-agent-smoke.XXXXXX)
sim_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A private snmpsimd: community "public" (= the file stem) on 127.0.0.1:PORT.
# As root it must drop to nobody, which then reads the data and writes the
# index cache, hence the open permissions; HOME points into the work dir so a
# user's own ~/.snmpsim data never leaks in (see tests/support/snmpsim.rs).
export SNMP_PERSISTENT_DIR="$work/snmp-state" MIBS=""
mkdir -p "$work/data" "$work/cache" "$work/home"
cp "$recording" "$work/data/public.snmprec"
chmod 0755 "$work" "$work/data" "$work/home"
chmod 0644 "$work/data/public.snmprec"
chmod 0777 "$work/cache"
user_args=()
[ "$(id -u)" -eq 0 ] && user_args=(--process-user=nobody --process-group=nogroup)
port=""
for attempt in 1 2 3; do
    port=$(free_port udp) || die "no free UDP port"
    HOME="$work/home" snmpsimd --data-dir="$work/data" --cache-dir="$work/cache" \
        --agent-udpv4-endpoint="127.0.0.1:$port" "${user_args[@]}" \
        --logging-method="file:$work/snmpsimd.log" >>"$work/snmpsimd.out" 2>&1 &
    sim_pid=$!
    ready=0
    for _ in $(seq 1 150); do
        if snmpget -v2c -c public -t 0.3 -r 0 "127.0.0.1:$port" 1.3.6.1.2.1.1.1.0 >/dev/null 2>&1; then
            ready=1
            break
        fi
        kill -0 "$sim_pid" 2>/dev/null || break
        sleep 0.2
    done
    [ $ready = 1 ] && break
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=""
    echo "snmpsimd did not answer on 127.0.0.1:$port (attempt $attempt)" >&2
done
if [ $ready = 0 ]; then
    cat "$work/snmpsimd.out" >&2 || true
    tail -n 30 "$work/snmpsimd.log" >&2 || true
    die "snmpsimd did not start"
fi
echo "==> snmpsimd serving $(basename "$recording") as community public on 127.0.0.1:$port" >&2

failed=()
for t in "$@"; do
    bin="$target_dir/$t/release/cpe-agent"
    q=$(qemu_for "$t")
    runner=()
    if [ -n "$q" ]; then
        command -v "$q" >/dev/null 2>&1 || q="$q-static"
        runner=("$q")
    fi
    echo "==> $t (${runner[*]:-native})" >&2
    ok=1
    if out=$("${runner[@]}" "$bin" --version 2>&1); then
        echo "    --version: $out" >&2
    else
        echo "    FAIL --version: $out" >&2
        ok=0
    fi
    if out=$("${runner[@]}" "$bin" config check config/agent.toml 2>&1); then
        echo "    config check: ok" >&2
    else
        echo "    FAIL config check config/agent.toml: $out" >&2
        ok=0
    fi
    if out=$(timeout 120 "${runner[@]}" "$bin" discover --target "127.0.0.1:$port" --json 2>"$work/discover.err"); then
        if grep -Eq "\"kind\"[[:space:]]*:[[:space:]]*\"$kind\"" <<<"$out"; then
            echo "    discover: found a $kind" >&2
        else
            found=$(grep -Eo '"kind"[[:space:]]*:[[:space:]]*"[^"]*"' <<<"$out" | tr '\n' ' ' || true)
            echo "    FAIL discover: no device of kind \"$kind\"; found: ${found:-nothing}" >&2
            cat "$work/discover.err" >&2
            ok=0
        fi
    else
        echo "    FAIL discover exited $?:" >&2
        printf '%s\n' "$out" | head -c 2000 >&2
        cat "$work/discover.err" >&2
        ok=0
    fi
    [ $ok = 1 ] || failed+=("$t")
done

if [ ${#failed[@]} -gt 0 ]; then
    die "smoke test failed for: ${failed[*]}"
fi
echo "==> smoke test passed: $*" >&2
