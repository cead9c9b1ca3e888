#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (the real binary, pseudo-terminal
# scanners, a real SQLite ledger, the simulated WeChat over loopback HTTP).
# Needs only the Rust toolchain: SQLite is bundled and serial support needs no libudev.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
