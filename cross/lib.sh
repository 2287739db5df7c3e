# Shared helpers for the cross/ scripts. Source, don't run.
# free_port comes from scripts/lib.sh; the installers below replace its
# ensure_packages/ensure_rust (they also know absolute files, CROSS_NO_INSTALL
# and rustup).
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

die() {
    echo "error: $*" >&2
    exit 1
}

# step "what" command...: runs the command, and on failure says which step failed.
step() {
    local what=$1
    shift
    echo "==> $what" >&2
    "$@" || die "$what failed (exit $?): $*"
}

# Where cargo puts (and the scripts find) build output.
cross_target_dir() {
    local dir=${CARGO_TARGET_DIR:-target}
    case $dir in
        /*) echo "$dir" ;;
        *) echo "$PWD/$dir" ;;
    esac
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

# Installs the Debian packages whose programs are missing: one `apt-get update`,
# then one `apt-get install`. Arguments are pairs "program:package" (or
# "/absolute/file:package").
ensure_packages() {
    local missing=() pair program package
    for pair in "$@"; do
        program=${pair%%:*}
        package=${pair#*:}
        if [ "${program:0:1}" = / ]; then
            [ -e "$program" ] && continue
        elif command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ]; then
            continue
        fi
        case " ${missing[*]} " in *" $package "*) ;; *) missing+=("$package") ;; esac
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_install "${missing[@]}"
}

apt_install() {
    [ "${CROSS_NO_INSTALL:-}" = 1 ] && die "missing packages (CROSS_NO_INSTALL=1): $*"
    echo "==> apt-get install $*" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        die "apt-get install $* failed"
}

ensure_rust() {
    if ! command -v rustup >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/rustup" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v rustup >/dev/null 2>&1 && command -v cargo >/dev/null 2>&1 ||
        die "rustup/cargo not found: install the Rust toolchain with rustup (https://rustup.rs) and run this again"
}

# zig for cargo-zigbuild, from the `ziglang` Python wheel. cargo-zigbuild finds
# `zig` on PATH, else runs `python3 -m ziglang`. When pip cannot install into
# the system Python (PEP 668 on Debian 12+), the wheel goes into a private venv
# and a `zig` wrapper into $CROSS_CACHE/bin, which is put on PATH.
ensure_zig() {
    local cache=${CROSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cpe-agent-cross}
    [ -x "$cache/bin/zig" ] && export PATH="$cache/bin:$PATH"
    if command -v zig >/dev/null 2>&1 || python3 -m ziglang version >/dev/null 2>&1; then
        return 0
    fi
    [ "${CROSS_NO_INSTALL:-}" = 1 ] && die "zig missing (CROSS_NO_INSTALL=1): pip install ziglang"
    echo "==> pip install ziglang" >&2
    if python3 -m pip install --quiet ziglang 2>/dev/null && python3 -m ziglang version >/dev/null 2>&1; then
        return 0
    fi
    echo "==> the system Python refuses pip installs; using a venv in $cache/venv" >&2
    if [ ! -x "$cache/venv/bin/pip" ]; then
        rm -rf "$cache/venv"
        python3 -m venv "$cache/venv" >/dev/null 2>&1 || {
            rm -rf "$cache/venv"
            apt_install python3-venv
            python3 -m venv "$cache/venv" || die "python3 -m venv failed"
        }
    fi
    "$cache/venv/bin/pip" install --quiet ziglang || die "pip install ziglang (venv) failed"
    mkdir -p "$cache/bin"
    printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$cache/venv/bin/python3" >"$cache/bin/zig"
    chmod +x "$cache/bin/zig"
    export PATH="$cache/bin:$PATH"
    zig version >/dev/null || die "zig from the ziglang wheel does not run"
}

# The qemu-user program for a target triple ("" when it runs natively).
qemu_for() {
    case $1 in
        x86_64-*) [ "$(uname -m)" = x86_64 ] && echo "" || echo qemu-x86_64 ;;
        aarch64-*) [ "$(uname -m)" = aarch64 ] && echo "" || echo qemu-aarch64 ;;
        armv7-*) echo qemu-arm ;;
        mipsel-*) echo qemu-mipsel ;;
        mips-*) echo qemu-mips ;;
        *) die "no qemu known for $1" ;;
    esac
}
