#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the integration
# tests that start real mosquitto, snmpsimd and snmpd on loopback.
# Installs what is missing first (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_rust
ensure_packages python3:python3 mosquitto:mosquitto mosquitto_sub:mosquitto-clients snmpsimd:snmpsim snmpget:snmp snmpd:snmpd ss:iproute2 openssl:openssl systemd-analyze:systemd faketime:faketime collectd:collectd-core prometheus-snmp-exporter:prometheus-snmp-exporter

echo "==> cargo fmt --check" >&2
cargo fmt --check
echo "==> cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --quiet --all-targets -- -D warnings
echo "==> scripts/layers.py: floors, no import circles, folded twins" >&2
python3 scripts/layers.py --self-test
echo "==> cargo test" >&2
cargo test --all-targets
