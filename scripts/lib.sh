# Shared helpers for the scripts (demo, test, explain, sweep-time). Source, don't run.

# Installs the Debian packages whose programs are missing: one `apt-get update`,
# then one `apt-get install`. Arguments are pairs "program:package".
ensure_packages() {
    local missing=() pair program package
    for pair in "$@"; do
        program=${pair%%:*}
        package=${pair#*:}
        if ! command -v "$program" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$program" ]; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; return 1; }
        sudo="sudo"
    fi
    echo "==> installing ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # Debian starts a system mosquitto and snmpd on install; ours use their own ports and configs.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
    command -v cargo >/dev/null 2>&1 && return 0
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH" && return 0
    echo "cargo not found: install the Rust toolchain (https://rustup.rs) and run this again" >&2
    return 1
}

# A free port on 127.0.0.1 for TCP or UDP ("tcp"/"udp"), picked at random.
free_port() {
    local proto=$1 port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        if ! ss -Hln"${proto:0:1}" "sport = :$port" 2>/dev/null | grep -q .; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# Serves snmprec recordings with snmpsimd, one per loopback address
# PREFIX.1, PREFIX.2, ... (e.g. PREFIX=127.0.9), from a data tree in DIR, and
# waits until the last answers. Sets SIM_PORT and SIM_PID; the caller kills
# SIM_PID. Needs snmpsimd, snmpget and python3.
#   serve_recordings DIR PREFIX FILE...
serve_recordings() {
    local dir=$1 prefix=$2 k=0 f
    shift 2
    command -v snmpsimd >/dev/null || { echo "snmpsimd missing: apt-get install snmpsim" >&2; return 1; }
    chmod 755 "$dir"
    mkdir -p "$dir/data/public" "$dir/cache" "$dir/home"
    chmod -R 755 "$dir/data" && chmod 777 "$dir/cache"
    SIM_PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local endpoints=() user=()
    for f in "$@"; do
        cp "$f" "$dir/data/public/1.3.6.1.6.1.1.$k.snmprec"
        chmod 644 "$dir/data/public/1.3.6.1.6.1.1.$k.snmprec"
        k=$((k + 1))
        endpoints+=(--agent-udpv4-endpoint="$prefix.$k:$SIM_PORT")
    done
    [ "$(id -u)" = 0 ] && user=(--process-user=nobody --process-group=nogroup)
    HOME="$dir/home" snmpsimd --v2c-arch --data-dir="$dir/data" --cache-dir="$dir/cache" \
        "${user[@]}" "${endpoints[@]}" >"$dir/snmpsimd.log" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 1 120); do
        snmpget -v2c -c public -t 0.5 -r 0 "$prefix.$k:$SIM_PORT" 1.3.6.1.2.1.1.3.0 >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "snmpsimd did not answer on $prefix.$k:$SIM_PORT (see $dir/snmpsimd.log)" >&2
    return 1
}
