#!/usr/bin/env bash
# Installs Outpost on this machine from source: build dependencies, a release build, then Deploy/install.sh with
# the same arguments: the binary in /usr/local/bin and, for each --role relay|vault|agent (repeatable), its user,
# its directories and its systemd units (not enabled: install.sh prints the one-time steps). As root:
#   bash Deploy/setup.sh --role relay
set -euo pipefail
cd "$(dirname "$0")/.."
# Wrong arguments, or not root, are refused before the long build.
bash Deploy/install.sh --check "$@"
bash Deploy/install-deps.sh
swift build -c release --product outpost
bash Deploy/install.sh --binary "$(swift build -c release --show-bin-path)/outpost" "$@"
