#!/usr/bin/env bash
# Scores classification as a provider would: every recording of
# ../shared/devices-dev (351 labelled devices of 119 vendors) and
# ../shared/devices (26 customer-LAN devices) served by snmpsimd on its own
# loopback address, swept by `cpe-agent discover --json`, and scored for
# kind, recognition and vendor. Prints the per-device table and the summary;
# the same run is the test
# tests/it/classification.rs (which fails below its floors).
#
#   scripts/classification-score.sh            # table on stdout
#   scripts/classification-score.sh > t.txt    # and keep it
#
# Needs snmpsimd (Debian package snmpsim) and ../shared beside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet --test it classification_generalises -- --nocapture --test-threads 1 >&2 || {
    echo "the classification test failed (see above)" >&2
    exit 1
}
cat target/score/classification.txt
