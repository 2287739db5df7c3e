#!/usr/bin/env bash
# Serves recordings with snmpsimd, one per loopback address 127.0.9.K, and
# prints `cpe-agent discover --explain` for them: the weighed evidence and
# the vendor's source, to see why a device comes out as it does.
#
#   scripts/explain.sh ../shared/devices-dev/ros.snmprec ...
#   BIN=target/release/cpe-agent scripts/explain.sh FILE...
#
# Needs snmpsimd (Debian package snmpsim), snmpget (snmp) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
[ $# -ge 1 ] && [ $# -le 250 ] || { echo "usage: $0 RECORDING.snmprec... (1 to 250)" >&2; exit 2; }
bin=${BIN:-target/debug/cpe-agent}
dir=$(mktemp -d)
SIM_PID=
cleanup() { [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
k=0
for f in "$@"; do
    k=$((k + 1))
    echo "127.0.9.$k $f"
done
serve_recordings "$dir" 127.0.9 "$@"
"$bin" discover --explain --target "127.0.9.1-127.0.9.$k:$SIM_PORT"
