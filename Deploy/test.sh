#!/usr/bin/env bash
# The test command (README, .ci/run): installs build dependencies, builds debug with tests once, runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build --build-tests
swift test --skip-build
