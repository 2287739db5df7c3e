#!/usr/bin/env bash
# A Debian package of cpe-agent, built with dpkg-deb from the static musl binary:
#
#   cross/deb.sh amd64     # x86_64-unknown-linux-musl
#   cross/deb.sh arm64     # aarch64-unknown-linux-musl
#   cross/deb.sh armhf     # armv7-unknown-linux-musleabihf
#
# Builds the binary first with cross/build.sh (a no-op when it is up to date),
# or packages CPE_AGENT_BIN if set. Output: $CARGO_TARGET_DIR/deb/cpe-agent_<version>_<arch>.deb
#
# Contents: /usr/bin/cpe-agent, /lib/systemd/system/cpe-agent.service (from
# systemd/), /etc/cpe-agent/agent.toml (from config/, a conffile, root:cpe-agent
# 0640 once installed), /usr/lib/sysusers.d/cpe-agent.conf, and maintainer
# scripts that create the system user, /var/lib/cpe-agent, and enable the unit.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/lib.sh

[ $# -eq 1 ] || die "usage: cross/deb.sh amd64|arm64|armhf"
arch=$1
case $arch in
    amd64) target=x86_64-unknown-linux-musl ;;
    arm64) target=aarch64-unknown-linux-musl ;;
    armhf) target=armv7-unknown-linux-musleabihf ;;
    *) die "unknown architecture '$arch' (amd64, arm64, armhf)" ;;
esac
ensure_packages dpkg-deb:dpkg
target_dir=$(cross_target_dir)

if [ -n "${CPE_AGENT_BIN:-}" ]; then
    bin=$CPE_AGENT_BIN
else
    bash cross/build.sh "$target" || die "cross/build.sh $target failed"
    bin=$target_dir/$target/release/cpe-agent
fi
[ -x "$bin" ] || die "no binary at $bin"

# The package version is the crate's ([package] version in Cargo.toml).
version=$(awk '
    /^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^version[[:space:]]*=/ { gsub(/.*=[[:space:]]*"|".*/, ""); print; exit }
' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [package]"
description=$(awk '
    /^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^description[[:space:]]*=/ { sub(/^[^"]*"/, ""); sub(/"[^"]*$/, ""); print; exit }
' Cargo.toml)
[ -n "$description" ] || description="LAN discovery, inventory and health agent for customer gateways"

out_dir=$target_dir/deb
root=$out_dir/cpe-agent_${version}_$arch
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/cpe-agent" \
    "$root/usr/lib/sysusers.d" "$root/usr/share/doc/cpe-agent"

install -m 0755 "$bin" "$root/usr/bin/cpe-agent"
install -m 0644 systemd/cpe-agent.service "$root/lib/systemd/system/cpe-agent.service"
# 0640 in the archive; postinst gives it to group cpe-agent (which does not
# exist yet when dpkg unpacks it).
install -m 0640 config/agent.toml "$root/etc/cpe-agent/agent.toml"
install -m 0644 README.md "$root/usr/share/doc/cpe-agent/README.md"
cat >"$root/usr/share/doc/cpe-agent/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cpe-agent

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
cat >"$root/usr/lib/sysusers.d/cpe-agent.conf" <<'EOF'
# cpe-agent's system user (systemd-sysusers); the package's postinst creates it.
u cpe-agent - "cpe-agent LAN discovery agent" /var/lib/cpe-agent /usr/sbin/nologin
EOF

echo /etc/cpe-agent/agent.toml >"$root/DEBIAN/conffiles"

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: cpe-agent
Version: $version
Architecture: $arch
Maintainer: cpe-agent maintainers <cpe-agent@localhost>
Installed-Size: $installed_kb
Section: net
Priority: optional
Description: $description
 A small daemon for customer gateways: it discovers the devices on the LAN
 over SNMP, collects their inventory and health, and reports them over MQTT.
 Statically linked (musl); configure /etc/cpe-agent/agent.toml, then
 systemctl start cpe-agent.
EOF

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e

unit=cpe-agent.service
conf=/etc/cpe-agent/agent.toml

create_user() {
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/cpe-agent.conf || true
    fi
    if ! getent group cpe-agent >/dev/null; then
        if command -v addgroup >/dev/null 2>&1; then
            addgroup --system --quiet cpe-agent
        else
            groupadd --system cpe-agent
        fi
    fi
    if ! getent passwd cpe-agent >/dev/null; then
        if command -v adduser >/dev/null 2>&1; then
            adduser --system --quiet --ingroup cpe-agent --home /var/lib/cpe-agent \
                --no-create-home --shell /usr/sbin/nologin --gecos "cpe-agent LAN discovery agent" cpe-agent
        else
            useradd --system --gid cpe-agent --home-dir /var/lib/cpe-agent --no-create-home \
                --shell /usr/sbin/nologin --comment "cpe-agent LAN discovery agent" cpe-agent
        fi
    fi
}

case "$1" in
configure)
    create_user
    # The config may hold secrets (MQTT password, SNMP communities): readable
    # by root and the agent's group only, unless the admin set an override.
    if [ -e "$conf" ] && ! dpkg-statoverride --list "$conf" >/dev/null 2>&1; then
        chown root:cpe-agent "$conf"
        chmod 0640 "$conf"
    fi
    # The unit uses DynamicUser= with StateDirectory=, and systemd moves this
    # to /var/lib/private/cpe-agent (leaving a symlink) at first start.
    if [ ! -L /var/lib/cpe-agent ] && ! dpkg-statoverride --list /var/lib/cpe-agent >/dev/null 2>&1; then
        install -d -o cpe-agent -g cpe-agent -m 0750 /var/lib/cpe-agent
    fi
    ;;
esac

if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        # What debhelper's dh_installsystemd writes: enable on first install,
        # keep the admin's choice (disabled stays disabled) on upgrades.
        deb-systemd-helper unmask "$unit" >/dev/null || true
        if deb-systemd-helper --quiet was-enabled "$unit"; then
            deb-systemd-helper enable "$unit" >/dev/null || true
        else
            deb-systemd-helper update-state "$unit" >/dev/null || true
        fi
    elif command -v systemctl >/dev/null 2>&1; then
        # Works offline too (it only writes the symlinks), e.g. in a container.
        systemctl enable "$unit" >/dev/null 2>&1 || true
    fi
    # Running systemd: reload units; restart on upgrade if it was running. A
    # first install is only enabled, not started: the example config needs the
    # provider's broker first (it then starts at next boot, or by hand).
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then
            if command -v deb-systemd-invoke >/dev/null 2>&1; then
                deb-systemd-invoke try-restart "$unit" >/dev/null || true
            else
                systemctl try-restart "$unit" >/dev/null || true
            fi
        fi
    fi
fi
exit 0
EOF

cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
unit=cpe-agent.service
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    if command -v deb-systemd-invoke >/dev/null 2>&1; then
        deb-systemd-invoke stop "$unit" >/dev/null || true
    else
        systemctl stop "$unit" >/dev/null 2>&1 || true
    fi
fi
exit 0
EOF

cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
unit=cpe-agent.service
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if command -v deb-systemd-helper >/dev/null 2>&1; then
    # As dh_installsystemd: mask on remove (the conffile stays), forget on purge.
    if [ "$1" = remove ]; then
        deb-systemd-helper mask "$unit" >/dev/null || true
    fi
    if [ "$1" = purge ]; then
        deb-systemd-helper purge "$unit" >/dev/null || true
        deb-systemd-helper unmask "$unit" >/dev/null || true
    fi
elif [ "$1" = remove ] || [ "$1" = purge ]; then
    # Without deb-systemd-helper, drop the enablement symlinks dpkg does not know.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable "$unit" >/dev/null 2>&1 || true
    fi
    rm -f "/etc/systemd/system/multi-user.target.wants/$unit"
fi
if [ "$1" = purge ]; then
    # The agent's state (report queue, sequence number). The system user and
    # group stay, as Debian does for system users (files may still be theirs).
    rm -rf /var/lib/cpe-agent /var/lib/private/cpe-agent
    rmdir /etc/cpe-agent 2>/dev/null || true
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

deb=$out_dir/cpe-agent_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null || die "dpkg-deb --build failed"
rm -rf "$root"
echo "==> $deb ($(stat -c %s "$deb") bytes)" >&2
echo "$deb"
