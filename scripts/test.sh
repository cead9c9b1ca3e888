#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (the real binary, pseudo-terminal
# scanners, FIFOs, a real SQLite ledger, the simulated WeChat over loopback HTTP, and the
# pages in headless Chromium).
#
# Needs the Rust toolchain; installs the Debian packages below if they are missing. The full-disk
# test mounts a small tmpfs, so the suite runs as root (as CI does) or with sudo rights.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages some tests need: chromium (the pages), systemd (systemd-analyze for the unit),
# nats-server (the store guard's tests start real servers; the system service is not used).
missing=()
if ! command -v nats-server >/dev/null 2>&1 && [ -z "${REDEEMD_NATS_SERVER:-}" ]; then missing+=(nats-server); fi
if ! command -v chromium >/dev/null 2>&1 && [ -z "${REDEEMD_CHROMIUM:-}" ]; then missing+=(chromium); fi
if ! command -v systemd-analyze >/dev/null 2>&1; then missing+=(systemd); fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --no-fail-fast: one failing test binary does not hide the results of the others.
cargo test --locked --all-targets --no-fail-fast "$@"
