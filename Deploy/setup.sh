#!/usr/bin/env bash
# Installs Outpost on this machine: build dependencies, a release build, the binary in /usr/local/bin, and the
# systemd units in /etc/systemd/system (not enabled: see each unit's header for the one-time steps).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build -c release --product outpost
install -m 0755 "$(swift build -c release --show-bin-path)/outpost" /usr/local/bin/outpost
install -d -m 0755 /etc/outpost
for unit in outpost-relay.service outpost-agent.service outpost-push@.service outpost-push@.timer outpost-backup@.service outpost-backup@.timer \
            outpost-store-maintenance.service outpost-store-maintenance.timer \
            outpost-relay-maintenance.service outpost-relay-maintenance.timer; do
  install -m 0644 "Deploy/$unit" "/etc/systemd/system/$unit"
done
command -v systemctl >/dev/null && systemctl daemon-reload || true
echo "installed /usr/local/bin/outpost ($(/usr/local/bin/outpost --version)); units are in /etc/systemd/system"
