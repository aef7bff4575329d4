#!/usr/bin/env bash
# Runs every test: unit and byte-fixture tests, then the end-to-end
# scenarios on the real kernel in throwaway network namespaces (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The scenarios start the binaries that setup.sh just built.
cargo test --workspace -- --test-threads="${FPSYNC_TEST_THREADS:-2}"
