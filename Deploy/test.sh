#!/usr/bin/env bash
# The test command (README, .ci/run): installs build dependencies, builds debug with tests once, runs them all,
# checks a running relay against docs/openapi/relay.yaml with schemathesis (docs/fuzzing.md), and runs the README's
# first command (Deploy/demo.sh: a vault and a relay on loopback, a backup pushed, forwarded, restored). The libFuzzer
# targets run with `bash Deploy/fuzz.sh` (a sanitizer build of its own, about 12 minutes cold: not in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
# Style: .swift-format, with the formatter that ships with the toolchain (`swift format -i -r Sources Tests` fixes).
swift format lint --strict -r Sources Tests Fuzz/Sources Package.swift Fuzz/Package.swift
swift build --build-tests
# Before the unit and end-to-end tests, so that their summary is the run's closing line.
bash Deploy/schemathesis.sh
bash Deploy/demo.sh
# Two runs: the end-to-end tests block threads of Swift's cooperative pool while they wait for the binary, and on
# a 2-core machine that starved the timers of unit tests running beside them (a 0.5 s hook time-out took 76 s).
swift test --skip-build --skip OutpostEndToEndTests
swift test --skip-build --filter OutpostEndToEndTests
