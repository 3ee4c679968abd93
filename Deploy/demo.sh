#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: installs dependencies, builds, starts a vault and a relay on loopback
# (HTTPS, self-signed certificates), registers the relay with the vault (credentials file + generated passphrase),
# enrolls this machine, pushes a backup, pushes again (incremental: nothing is read), forwards it encrypted to the
# vault, verifies the vault copy, restores from the relay, compares byte for byte, prints the web console's address
# and a one-time login link, and stops both gracefully (OUTPOST_DEMO_KEEP=1 keeps them running for the console).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Deploy/install-deps.sh
swift build --product outpost
BIN="$(swift build --show-bin-path)/outpost"
WORK="${OUTPOST_DEMO_DIR:-$(mktemp -d /tmp/outpost-demo.XXXXXX)}"
RELAY_PID=""
VAULT_PID=""
cleanup() {
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
  [ -n "$VAULT_PID" ] && kill "$VAULT_PID" 2>/dev/null || true
}
trap cleanup EXIT
echo "== demo in $WORK"
mkdir -p "$WORK/data"
cp -a Sources docs "$WORK/data/"
head -c 20000000 /dev/urandom > "$WORK/data/random.bin"
ln -sf docs/format.md "$WORK/data/format-link"

echo "== vault: init (geo-redundant) and serve on 127.0.0.1"
"$BIN" vault init --data "$WORK/vault" --name offsite --url https://127.0.0.1:8441 >/dev/null
"$BIN" vault serve --data "$WORK/vault" --listen 127.0.0.1:0 --port-file "$WORK/vault.port" 2> "$WORK/vault.log" &
VAULT_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/vault.port" ] && break; sleep 0.1; done
VPORT=$(cat "$WORK/vault.port")
"$BIN" vault credentials --data "$WORK/vault" --out "$WORK/vault.creds" --url "https://127.0.0.1:$VPORT"

echo "== relay: init and serve on 127.0.0.1"
FP=$("$BIN" relay init --data "$WORK/relay")
"$BIN" relay serve --data "$WORK/relay" --listen 127.0.0.1:0 --port-file "$WORK/relay.port" \
  --console-listen 127.0.0.1:0 --console-port-file "$WORK/console.port" 2> "$WORK/relay.log" &
RELAY_PID=$!
for _ in $(seq 1 300); do [ -s "$WORK/relay.port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/relay.port")
echo "relay on https://127.0.0.1:$PORT, certificate $FP"

echo "== enroll this machine as 'demo'"
TOKEN=$("$BIN" relay add-machine --data "$WORK/relay" demo 2>/dev/null)
"$BIN" enroll --relay "https://127.0.0.1:$PORT" --token-file <(printf %s "$TOKEN") --fingerprint "$FP" --config "$WORK/client.toml"

echo "== first backup (pushed to the relay)"
"$BIN" backup --config "$WORK/client.toml" "$WORK/data"
echo "== second backup (nothing changed: nothing is read or sent)"
"$BIN" backup --config "$WORK/client.toml" "$WORK/data"
echo "== register the relay with the vault (the passphrase never leaves this machine), forward, verify"
"$BIN" relay register --data "$WORK/relay" --vault-credentials "$WORK/vault.creds" --passphrase-file "$WORK/passphrase" --generate-passphrase
"$BIN" relay forward --data "$WORK/relay" --now
"$BIN" relay forwarding --data "$WORK/relay"
"$BIN" relay verify-vault --data "$WORK/relay"
if grep -rqa "FastCDC" "$WORK/vault"; then echo "plaintext found in the vault!"; exit 1; else echo "the vault holds no plaintext"; fi
echo "== recovery points"
"$BIN" points --config "$WORK/client.toml"
echo "== restore from the relay"
"$BIN" restore --config "$WORK/client.toml" latest --target "$WORK/restore"
diff -r --no-dereference "$WORK/data" "$WORK/restore$WORK/data" && echo "restore is byte-identical"
echo "== web console: an administrator with a one-time login link"
for _ in $(seq 1 300); do [ -s "$WORK/console.port" ] && break; sleep 0.1; done
CPORT=$(cat "$WORK/console.port")
LINK=$("$BIN" relay admin add --data "$WORK/relay" admin --login-link 2>/dev/null | sed -n "s#^https://[^/]*#https://127.0.0.1:$CPORT#p")
echo "console on https://127.0.0.1:$CPORT (the relay's certificate); log in once with: $LINK"
echo "== relay: machines and a full check (reading every chunk)"
"$BIN" relay machines --data "$WORK/relay"
"$BIN" relay check --data "$WORK/relay" --read-data
if [ -n "${OUTPOST_DEMO_KEEP:-}" ]; then
  echo "== OUTPOST_DEMO_KEEP is set: relay, console and vault keep running (Ctrl-C stops them)"
  wait "$RELAY_PID"
fi
echo "== stop the relay and the vault (SIGTERM: graceful)"
kill -TERM "$RELAY_PID"; wait "$RELAY_PID"; RELAY_PID=""
kill -TERM "$VAULT_PID"; wait "$VAULT_PID"; VAULT_PID=""
echo "== done; remove $WORK when finished"
