#!/usr/bin/env bash
# Times a discovery sweep of a /24 holding the 26 real devices of
# ../shared/devices (snmpsimd, one device per loopback address
# 127.0.1.1-26), for each cpe-agent binary given: wall time and CPU time of
# `cpe-agent discover --json --target 127.0.1.0/24:PORT`, the median of RUNS
# (default 5) runs, and how many devices were found.
#
#   scripts/sweep-time.sh target/release/cpe-agent /tmp/cpe-agent-before
#   RUNS=9 scripts/sweep-time.sh target/release/cpe-agent
#
# Needs snmpsimd (Debian package snmpsim) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 CPE-AGENT-BINARY..." >&2; exit 2; }
runs=${RUNS:-5}
shared=../shared/devices
[ -d "$shared" ] || { echo "$shared is missing" >&2; exit 1; }
command -v snmpsimd >/dev/null || { echo "snmpsimd missing: apt-get install snmpsim" >&2; exit 1; }

dir=$(mktemp -d)
chmod 755 "$dir"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
mkdir -p "$dir/data/public" "$dir/cache" "$dir/home"
chmod -R 755 "$dir/data" && chmod 777 "$dir/cache"
endpoints=()
k=0
for f in "$shared"/*.snmprec; do
    cp "$f" "$dir/data/public/1.3.6.1.6.1.1.$k.snmprec"
    chmod 644 "$dir/data/public/1.3.6.1.6.1.1.$k.snmprec"
    k=$((k + 1))
done
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for i in $(seq 1 "$k"); do endpoints+=(--agent-udpv4-endpoint="127.0.1.$i:$port"); done
user=()
[ "$(id -u)" = 0 ] && user=(--process-user=nobody --process-group=nogroup)
HOME="$dir/home" snmpsimd --v2c-arch --data-dir="$dir/data" --cache-dir="$dir/cache" \
    "${user[@]}" "${endpoints[@]}" >"$dir/snmpsimd.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
    snmpget -v2c -c public -t 0.5 -r 0 "127.0.1.$k:$port" 1.3.6.1.2.1.1.1.0 >/dev/null 2>&1 && break
    sleep 0.5
done

printf '%-44s %8s %8s %6s\n' BINARY WALL_S CPU_S FOUND
for bin in "$@"; do
    walls=() cpus=() found=0
    for _ in $(seq 1 "$runs"); do
        out=$( { /usr/bin/time -f '%e %U %S' "$bin" discover --json --target "127.0.1.0/24:$port" >"$dir/out.json"; } 2>&1 | tail -1)
        read -r wall u s <<<"$out"
        walls+=("$wall")
        cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')")
        found=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$dir/out.json")
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
    printf '%-44s %8s %8s %6s\n' "$bin" "$(median "${walls[@]}")" "$(median "${cpus[@]}")" "$found"
done
