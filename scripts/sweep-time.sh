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
. scripts/lib.sh
[ $# -ge 1 ] || { echo "usage: $0 CPE-AGENT-BINARY..." >&2; exit 2; }
runs=${RUNS:-5}
shared=../shared/devices
[ -d "$shared" ] || { echo "$shared is missing" >&2; exit 1; }

dir=$(mktemp -d)
SIM_PID=
cleanup() { [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
serve_recordings "$dir" 127.0.1 "$shared"/*.snmprec
port=$SIM_PORT

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
