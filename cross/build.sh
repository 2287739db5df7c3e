#!/usr/bin/env bash
# Static release builds of cpe-agent for the gateways' CPUs, on a fresh Debian
# (or Ubuntu) machine with rustup. Installs what is missing, builds each target
# in release, strips if the binary still has symbols, and prints a table of the
# stripped sizes and build times.
#
#   cross/build.sh                    # all five targets
#   cross/build.sh aarch64-unknown-linux-musl mipsel-unknown-linux-musl
#
# Binaries land where cargo puts them: $CARGO_TARGET_DIR/<target>/release/cpe-agent
# (CARGO_TARGET_DIR defaults to the repository's target/). See cross/README.md.
#
# Environment: CARGO_TARGET_DIR; CROSS_NIGHTLY (default "nightly", the toolchain
# used for -Zbuild-std targets, e.g. "nightly-2026-10-29" to pin it);
# CROSS_NO_INSTALL=1 to fail instead of installing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/lib.sh

ALL_TARGETS=(
    x86_64-unknown-linux-musl
    aarch64-unknown-linux-musl
    armv7-unknown-linux-musleabihf
    mipsel-unknown-linux-musl
    mips-unknown-linux-musl
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
    case " ${ALL_TARGETS[*]} " in
        *" $t "*) ;;
        *) die "unknown target '$t' (known: ${ALL_TARGETS[*]})" ;;
    esac
done

ensure_rust
target_dir=$(cross_target_dir)
nightly=${CROSS_NIGHTLY:-nightly}

# ---- what each target needs -------------------------------------------------
# kind: "stable" = rustup's prebuilt std, plain `cargo build`;
#       "buildstd" = nightly, -Zbuild-std, cargo-zigbuild (zig links against
#       its own musl), Debian's cross gcc for C code (ring).
kind_of() {
    case $1 in
        x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) echo stable ;;
        *) echo buildstd ;;
    esac
}
gcc_prefix_of() {
    case $1 in
        x86_64-unknown-linux-musl) echo "" ;;
        aarch64-unknown-linux-musl) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-musleabihf) echo arm-linux-gnueabihf ;;
        mipsel-unknown-linux-musl) echo mipsel-linux-gnu ;;
        mips-unknown-linux-musl) echo mips-linux-gnu ;;
    esac
}

debian_arch_of() {
    case $1 in
        x86_64-*) echo amd64 ;;
        aarch64-*) echo arm64 ;;
        armv7-*) echo armhf ;;
        mipsel-*) echo mipsel ;;
        mips-*) echo mips ;;
    esac
}

# ---- install what is missing --------------------------------------------------
pkgs=()
need_stable_targets=()
need_buildstd=0
for t in "${targets[@]}"; do
    p=$(gcc_prefix_of "$t")
    if [ -z "$p" ]; then
        pkgs+=(musl-gcc:musl-tools)
    elif [ "${t%%-*}" = mips ] || [ "${t%%-*}" = mipsel ]; then
        # C is compiled by zig cc (below); binutils only for strip.
        pkgs+=("$p-strip:binutils-$p")
    else
        # gcc-<triple> without recommends lacks the libc headers that ring's C needs.
        pkgs+=("$p-gcc:gcc-$p" "/usr/$p/include/stdint.h:libc6-dev-$(debian_arch_of "$t")-cross")
    fi
    if [ "$(kind_of "$t")" = stable ]; then
        need_stable_targets+=("$t")
    else
        need_buildstd=1
    fi
done
pkgs+=(cc:gcc file:file)
[ $need_buildstd = 1 ] && pkgs+=(python3:python3)
step "checking Debian packages" ensure_packages "${pkgs[@]}"

if [ ${#need_stable_targets[@]} -gt 0 ]; then
    installed=$(rustup target list --installed)
    for t in "${need_stable_targets[@]}"; do
        grep -qx "$t" <<<"$installed" || step "rustup target add $t" rustup target add "$t"
    done
fi

if [ $need_buildstd = 1 ]; then
    if ! rustup run "$nightly" rustc --version >/dev/null 2>&1; then
        step "installing the $nightly toolchain" \
            rustup toolchain install "$nightly" --profile minimal --component rust-src
    fi
    components=$(rustup component list --installed --toolchain "$nightly" 2>/dev/null || true)
    if ! grep -q '^rust-src' <<<"$components"; then
        step "adding rust-src to $nightly" rustup component add rust-src --toolchain "$nightly"
    fi
    ensure_zig
    if ! command -v cargo-zigbuild >/dev/null 2>&1; then
        step "cargo install cargo-zigbuild" cargo install cargo-zigbuild --locked
    fi
fi

# ---- build ------------------------------------------------------------------------
results=()
for t in "${targets[@]}"; do
    T=$(printf %s "$t" | tr 'a-z-' 'A-Z_')   # CARGO_TARGET_<T>_...
    t_=${t//-/_}                              # CC_<t_>
    p=$(gcc_prefix_of "$t")
    env_args=()
    if [ "$(kind_of "$t")" = stable ]; then
        if [ -z "$p" ]; then
            # x86_64-musl: rustc's default linker and self-contained musl;
            # musl-gcc only compiles C.
            env_args+=("CC_$t_=musl-gcc")
        else
            env_args+=("CC_$t_=$p-gcc" "CARGO_TARGET_${T}_LINKER=$p-gcc")
        fi
        cmd=(cargo build --locked --release --bin cpe-agent --target "$t")
    else
        flags="-C link-self-contained=no"
        case $t in mips*) flags="$flags -C relocation-model=static" ;; esac
        # RUSTFLAGS, when set, overrides target.<triple>.rustflags: add ours to it.
        [ -z "${CARGO_ENCODED_RUSTFLAGS:-}" ] || die "unset CARGO_ENCODED_RUSTFLAGS (it would drop $flags)"
        if [ -n "${RUSTFLAGS:-}" ]; then
            env_args+=("RUSTFLAGS=$RUSTFLAGS $flags")
        else
            env_args+=("CARGO_TARGET_${T}_RUSTFLAGS=$flags")
        fi
        case $t in
            mips*)
                # Rust's MIPS musl targets are soft-float. Debian's MIPS gcc
                # makes hard-float objects (-mfpxx), which ld.lld refuses to
                # link with soft-float ones, and with -msoft-float it lacks
                # glibc's soft-float headers. So ring's C is compiled by
                # cargo-zigbuild's zig cc for the same soft-float musl target.
                ;;
            *) env_args+=("CC_$t_=$p-gcc") ;;
        esac
        cmd=(cargo "+$nightly" zigbuild --locked --release --bin cpe-agent --target "$t"
            -Zbuild-std=std,panic_abort)
    fi
    echo "==> building $t" >&2
    echo "    env ${env_args[*]} ${cmd[*]}" >&2
    start=$(date +%s.%N)
    if ! env CARGO_TARGET_DIR="$target_dir" "${env_args[@]}" "${cmd[@]}"; then
        die "cargo build for $t failed (command above)"
    fi
    end=$(date +%s.%N)
    bin="$target_dir/$t/release/cpe-agent"
    [ -x "$bin" ] || die "$bin missing after a successful build"
    if file -b "$bin" | grep -q 'not stripped'; then
        strip_tool=strip
        [ -n "$p" ] && strip_tool=$p-strip
        echo "==> $strip_tool $bin" >&2
        "$strip_tool" "$bin" || die "$strip_tool failed on $bin"
    fi
    if ! file -b "$bin" | grep -Eq 'statically linked|static-pie linked'; then
        die "$bin is not static: $(file -b "$bin")"
    fi
    size=$(stat -c %s "$bin")
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    results+=("$t $size $secs")
done

printf '\n%-32s %12s %9s %8s\n' TARGET BYTES MiB BUILD
for r in "${results[@]}"; do
    read -r t size secs <<<"$r"
    printf '%-32s %12d %9.2f %7ss\n' "$t" "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "$secs"
done
echo "binaries: $target_dir/<target>/release/cpe-agent"
