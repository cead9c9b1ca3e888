#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (the real binary, pseudo-terminal
# scanners, FIFOs, a real SQLite ledger, the simulated WeChat over loopback HTTP, and the
# pages in headless Chromium).
#
# Needs the Rust toolchain; installs Debian's chromium for the browser test if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && [ -z "${REDEEMD_CHROMIUM:-}" ]; then
  echo "== installing Debian's chromium (for the browser test)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

cargo test --locked --all-targets "$@"
