#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: installs dependencies, builds, starts a relay on loopback (HTTPS,
# self-signed certificate), enrolls this machine, pushes a backup, pushes again (incremental: nothing is read),
# restores it, compares byte for byte, checks the relay's store, and stops the relay gracefully.
# Grows with the product: the vault and forwarding join this script when they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build --product outpost
BIN="$(swift build --show-bin-path)/outpost"
WORK="${OUTPOST_DEMO_DIR:-$(mktemp -d /tmp/outpost-demo.XXXXXX)}"
RELAY_PID=""
cleanup() { [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true; }
trap cleanup EXIT
echo "== demo in $WORK"
mkdir -p "$WORK/data"
cp -a Sources docs "$WORK/data/"
head -c 20000000 /dev/urandom > "$WORK/data/random.bin"
ln -sf docs/format.md "$WORK/data/format-link"

echo "== relay: init and serve on 127.0.0.1"
FP=$("$BIN" relay init --data "$WORK/relay")
"$BIN" relay serve --data "$WORK/relay" --listen 127.0.0.1:0 --port-file "$WORK/relay.port" 2> "$WORK/relay.log" &
RELAY_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/relay.port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/relay.port")
echo "relay on https://127.0.0.1:$PORT, certificate $FP"

echo "== enroll this machine as 'demo'"
TOKEN=$("$BIN" relay add-machine --data "$WORK/relay" demo 2>/dev/null)
"$BIN" enroll --relay "https://127.0.0.1:$PORT" --token "$TOKEN" --fingerprint "$FP" --config "$WORK/client.toml"

echo "== first backup (pushed to the relay)"
"$BIN" backup --config "$WORK/client.toml" "$WORK/data"
echo "== second backup (nothing changed: nothing is read or sent)"
"$BIN" backup --config "$WORK/client.toml" "$WORK/data"
echo "== recovery points"
"$BIN" points --config "$WORK/client.toml"
echo "== restore from the relay"
"$BIN" restore --config "$WORK/client.toml" latest --target "$WORK/restore"
diff -r --no-dereference "$WORK/data" "$WORK/restore$WORK/data" && echo "restore is byte-identical"
echo "== relay: machines and a full check (reading every chunk)"
"$BIN" relay machines --data "$WORK/relay"
"$BIN" relay check --data "$WORK/relay" --read-data
echo "== stop the relay (SIGTERM: graceful)"
kill -TERM "$RELAY_PID"; wait "$RELAY_PID"; RELAY_PID=""
echo "== done; remove $WORK when finished"
