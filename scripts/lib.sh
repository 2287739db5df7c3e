# Shared helpers for scripts/demo.sh and scripts/test.sh. Source, don't run.

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
