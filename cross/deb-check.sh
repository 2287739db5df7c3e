#!/usr/bin/env bash
# Builds the amd64 package, installs it with dpkg -i on this machine, checks it,
# then removes and purges it. For CI or a throwaway Debian container, as root;
# no running systemd needed. Refuses to run if a cpe-agent package is already
# installed (it would replace it).
#
#   cross/deb-check.sh            # or: cross/deb-check.sh path/to/cpe-agent_X_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/lib.sh

[ "$(id -u)" -eq 0 ] || die "run as root (it installs the package with dpkg -i)"
[ "$(dpkg --print-architecture)" = amd64 ] || die "this checks the amd64 package, on an amd64 machine"
status=$(dpkg-query -W -f='${db:Status-Status}' cpe-agent 2>/dev/null || true)
case $status in
    "" | not-installed) ;;
    *) die "a cpe-agent package is here (state: $status); purge it first (dpkg -P cpe-agent)" ;;
esac

if [ $# -ge 1 ]; then
    deb=$1
else
    deb=$(bash cross/deb.sh amd64 | tail -n 1) || die "cross/deb.sh amd64 failed"
fi
[ -f "$deb" ] || die "no package at $deb"

installed=0
cleanup() {
    local rc=$?
    trap - EXIT
    if [ $installed = 1 ] && [ $rc -ne 0 ]; then
        echo "==> purging after a failure" >&2
        dpkg -P cpe-agent >/dev/null 2>&1 || true
    fi
    exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "==> dpkg -i $deb" >&2
dpkg-deb --info "$deb" >/dev/null || fail "not a valid package"
contents=$(dpkg-deb -c "$deb") || fail "cannot list the package"
grep -q ' ./usr/bin/cpe-agent$' <<<"$contents" || fail "no /usr/bin/cpe-agent in the package"
installed=1
dpkg -i "$deb" || fail "dpkg -i failed"

echo "==> checks" >&2
[ -x /usr/bin/cpe-agent ] || fail "/usr/bin/cpe-agent missing"
/usr/bin/cpe-agent --version || fail "cpe-agent --version"
/usr/bin/cpe-agent config check /etc/cpe-agent/agent.toml || fail "config check /etc/cpe-agent/agent.toml"
[ -f /lib/systemd/system/cpe-agent.service ] || fail "unit missing"
cmp -s /lib/systemd/system/cpe-agent.service systemd/cpe-agent.service || fail "unit differs from systemd/cpe-agent.service"
grep -qx /etc/cpe-agent/agent.toml /var/lib/dpkg/info/cpe-agent.conffiles || fail "agent.toml is not a conffile"
mode=$(stat -c '%a %U %G' /etc/cpe-agent/agent.toml)
[ "$mode" = "640 root cpe-agent" ] || fail "agent.toml is '$mode', want '640 root cpe-agent'"
getent passwd cpe-agent >/dev/null || fail "no user cpe-agent"
getent group cpe-agent >/dev/null || fail "no group cpe-agent"
shell=$(getent passwd cpe-agent | cut -d: -f7)
case $shell in */nologin | /bin/false) ;; *) fail "user cpe-agent has a login shell: $shell" ;; esac
uid=$(id -u cpe-agent)
[ "$uid" -lt 1000 ] || fail "cpe-agent is not a system user (uid $uid)"
state=$(stat -c '%U %G %a' /var/lib/cpe-agent)
[ "$state" = "cpe-agent cpe-agent 750" ] || fail "/var/lib/cpe-agent is '$state'"
# Enabled: the [Install] symlink, made by deb-systemd-helper or systemctl enable.
[ -L /etc/systemd/system/multi-user.target.wants/cpe-agent.service ] || fail "unit not enabled"
# The agent as its user can read its config (what ExecStartPre does).
if command -v setpriv >/dev/null 2>&1; then
    setpriv --reuid=cpe-agent --regid=cpe-agent --init-groups \
        /usr/bin/cpe-agent config check /etc/cpe-agent/agent.toml >/dev/null ||
        fail "user cpe-agent cannot check /etc/cpe-agent/agent.toml"
fi
# Reinstall (the upgrade path) keeps the conffile's mode.
dpkg -i "$deb" >/dev/null || fail "reinstall failed"
[ "$(stat -c '%a %G' /etc/cpe-agent/agent.toml)" = "640 cpe-agent" ] || fail "reinstall changed agent.toml's mode"

echo "==> dpkg -r cpe-agent" >&2
dpkg -r cpe-agent || fail "dpkg -r failed"
[ ! -e /usr/bin/cpe-agent ] || fail "/usr/bin/cpe-agent left after remove"
[ -f /etc/cpe-agent/agent.toml ] || fail "remove deleted the conffile"
echo "==> dpkg -P cpe-agent" >&2
dpkg -P cpe-agent || fail "dpkg -P failed"
installed=0
[ ! -e /etc/cpe-agent/agent.toml ] || fail "purge left /etc/cpe-agent/agent.toml"
[ ! -e /var/lib/cpe-agent ] || fail "purge left /var/lib/cpe-agent"
[ ! -e /etc/systemd/system/multi-user.target.wants/cpe-agent.service ] || fail "purge left the enablement symlink"
echo "==> package check passed: $(basename "$deb")" >&2
