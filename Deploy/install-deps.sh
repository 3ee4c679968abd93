#!/usr/bin/env bash
# Installs what building Outpost needs on Debian 12 (the Swift toolchain itself is expected on PATH).
# Idempotent: does nothing when everything is there.
set -euo pipefail
need=()
dpkg -s libzstd-dev >/dev/null 2>&1 || need+=(libzstd-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift 6.2+ toolchain (swift.org) first" >&2; exit 1; }
