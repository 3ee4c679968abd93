#!/usr/bin/env bash
# Installs what building Outpost needs on Debian 12 (the Swift toolchain itself is expected on PATH).
# Idempotent: does nothing when everything is there.
set -euo pipefail
need=()
dpkg -s libzstd-dev >/dev/null 2>&1 || need+=(libzstd-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# A real SMTP server for the alert tests (Tests/Support/smtp_server.py).
dpkg -s python3-aiosmtpd >/dev/null 2>&1 || need+=(python3-aiosmtpd)
# systemd-analyze, which DeployUnitTests verifies Deploy/'s units with.
dpkg -s systemd >/dev/null 2>&1 || need+=(systemd)
# A real browser for the console's test (ConsoleBrowserEndToEndTests): headless chromium driven by Selenium.
for p in chromium chromium-driver python3-selenium; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
# A single-node Ceph cluster for the S3 backend's tests (Deploy/ceph.sh).
for p in ceph-mon ceph-osd radosgw ceph-common; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift is not on PATH: install the Swift 6.2+ toolchain (swift.org) first" >&2; exit 1; }
