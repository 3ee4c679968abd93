#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: installs dependencies, builds, then backs up a sample tree into a
# fresh store, backs it up again (incremental), restores it, compares, and checks the store.
# Grows with the product: relay and vault join this script as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build --product outpost
BIN="$(swift build --show-bin-path)/outpost"
WORK="${OUTPOST_DEMO_DIR:-$(mktemp -d /tmp/outpost-demo.XXXXXX)}"
echo "== demo in $WORK"
mkdir -p "$WORK/data"
cp -a Sources docs "$WORK/data/"
head -c 20000000 /dev/urandom > "$WORK/data/random.bin"
ln -sf docs/format.md "$WORK/data/format-link"

"$BIN" store init --store "$WORK/store"
echo "== first backup"
"$BIN" backup --store "$WORK/store" --machine demo "$WORK/data"
echo "== second backup (nothing changed: nothing is read)"
"$BIN" backup --store "$WORK/store" --machine demo "$WORK/data"
echo "== recovery points"
"$BIN" points --store "$WORK/store"
echo "== restore"
"$BIN" restore --store "$WORK/store" --machine demo latest --target "$WORK/restore"
diff -r --no-dereference "$WORK/data" "$WORK/restore$WORK/data" && echo "restore is byte-identical"
echo "== check (reading every chunk)"
"$BIN" check --store "$WORK/store" --read-data
echo "== done; remove $WORK when finished"
