#!/usr/bin/env bash
# The agent's main job, end to end, on this machine:
# a local MQTT broker, three simulated LAN devices on loopback addresses, and
# `cpe-agent run` discovering, polling and reporting them. The MQTT messages
# are shown as they arrive until Ctrl-C; then everything started here stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
ensure_packages mosquitto:mosquitto mosquitto_sub:mosquitto-clients snmpsimd:snmpsim snmpget:snmp snmpd:snmpd ss:iproute2

echo "==> building cpe-agent" >&2
cargo build --quiet --bin cpe-agent
agent=target/debug/cpe-agent

work=$(mktemp -d /tmp/cpe-agent-demo.XXXXXX)
pids=()
agent_pid=""
cleanup() {
    trap - EXIT INT TERM HUP
    # The output may be gone: a closed terminal (SIGHUP), or a pipe reader
    # (`| tee`, `| less`) stopped by the same Ctrl-C. Saying so must not end
    # the cleanup: no SIGPIPE here, and a failed write is ignored.
    trap '' PIPE
    { echo; echo "==> stopping the demo"; } >&2 2>/dev/null || true
    # The agent first, so that its "offline" status still reaches the subscriber.
    if [ -n "$agent_pid" ]; then
        kill -TERM "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
        sleep 0.3
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
# Ctrl-C, kill, and closing the terminal all stop what the demo started.
trap cleanup EXIT
trap 'cleanup; exit 129' HUP
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# net-snmp's client tools keep state; keep theirs inside the demo's folder.
export SNMP_PERSISTENT_DIR="$work/snmp-state" MIBS=""
broker_port=$(free_port tcp)
snmp_port=$(free_port udp)

# The broker: our own config, loopback only.
cat > "$work/mosquitto.conf" <<CONF
listener $broker_port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
user root
CONF
# Helpers run in their own sessions (setsid): Ctrl-C reaches only the agent,
# which then says goodbye to a broker and subscriber that are still there.
setsid mosquitto -c "$work/mosquitto.conf" 2>>"$work/mosquitto.log" & pids+=($!)

# The simulated LAN: each recording on its own address, community "public".
mkdir -p "$work/snmp/data/public" "$work/snmp/cache"
endpoints=()
n=0
for rec in tests/data/docsis-modem.snmprec tests/data/ip-pbx.snmprec tests/data/soho-router.snmprec; do
    cp "$rec" "$work/snmp/data/public/1.3.6.1.6.1.1.$n.snmprec"
    n=$((n + 1))
    endpoints+=("--agent-udpv4-endpoint=127.0.1.$n:$snmp_port")
done
chmod -R a+rwX "$work/snmp"
chmod a+x "$work"
user_args=()
[ "$(id -u)" -eq 0 ] && user_args=(--process-user=nobody --process-group=nogroup)
setsid snmpsimd --v2c-arch --data-dir="$work/snmp/data" --cache-dir="$work/snmp/cache" \
    "${endpoints[@]}" "${user_args[@]}" >"$work/snmpsimd.log" 2>&1 & pids+=($!)

echo "==> waiting for the broker (127.0.0.1:$broker_port) and 3 devices (127.0.1.1-3:$snmp_port)" >&2
for _ in $(seq 1 100); do
    if mosquitto_pub -h 127.0.0.1 -p "$broker_port" -t demo/probe -m x 2>/dev/null &&
        snmpget -v2c -c public -t 0.3 -r 0 "127.0.1.$n:$snmp_port" 1.3.6.1.2.1.1.5.0 >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.2
done
[ "${ready:-}" = 1 ] || { echo "the broker or snmpsimd did not start; logs in $work" >&2; cat "$work"/*.log >&2; exit 1; }

cat > "$work/agent.toml" <<CONF
[agent]
id = "demo-gateway"

[mqtt]
host = "127.0.0.1"
port = $broker_port

[discovery]
lan_subnets = false
targets = ["127.0.1.1-127.0.1.$n:$snmp_port"]
timeout = "500ms"

[[credentials]]
name = "lan-public"
version = "v2c"
community = "public"

[polling]
interval = "10s"

[storage]
state_dir = "$work/state"
CONF

echo "==> MQTT messages on cpe/v1/# (Ctrl-C to stop)" >&2
setsid mosquitto_sub -h 127.0.0.1 -p "$broker_port" -v -t 'cpe/v1/#' & pids+=($!)
sleep 0.3
"$agent" run --config "$work/agent.toml" & agent_pid=$!
wait "$agent_pid" || true
