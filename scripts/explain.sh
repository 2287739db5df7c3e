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
[ $# -ge 1 ] && [ $# -le 250 ] || { echo "usage: $0 RECORDING.snmprec... (1 to 250)" >&2; exit 2; }
bin=${BIN:-target/debug/cpe-agent}
command -v snmpsimd >/dev/null || { echo "snmpsimd missing: apt-get install snmpsim" >&2; exit 1; }
dir=$(mktemp -d)
chmod 755 "$dir"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir/data/public" "$dir/cache" "$dir/home"
chmod -R 755 "$dir/data" && chmod 777 "$dir/cache"
endpoints=()
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
k=0
for f in "$@"; do
    cp "$f" "$dir/data/public/1.3.6.1.6.1.1.$k.snmprec"
    chmod 644 "$dir/data/public/1.3.6.1.6.1.1.$k.snmprec"
    k=$((k + 1))
    endpoints+=(--agent-udpv4-endpoint="127.0.9.$k:$port")
    echo "127.0.9.$k $f"
done
user=()
[ "$(id -u)" = 0 ] && user=(--process-user=nobody --process-group=nogroup)
HOME="$dir/home" snmpsimd --v2c-arch --data-dir="$dir/data" --cache-dir="$dir/cache" \
    "${user[@]}" "${endpoints[@]}" >"$dir/snmpsimd.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
    snmpget -v2c -c public -t 0.5 -r 0 "127.0.9.$k:$port" 1.3.6.1.2.1.1.3.0 >/dev/null 2>&1 && break
    sleep 0.5
done
"$bin" discover --explain --target "127.0.9.1-127.0.9.$k:$port"
