#!/usr/bin/env bash
# bench/vault.sh: forwarding throughput relay → vault on loopback (HTTPS both ways), and the encryption overhead
# versus unencrypted copies of the same packs: a local cp -r, and an upload over the same HTTPS path to the same
# vault (curl PUT with the relay's credential). A benchmark, not a test; build a release binary first:
#
#     swift build -c release --scratch-path .build-release --product outpost
#     bench/vault.sh                 # the 2000 MB corpus of compare.sh / relay.sh
#     CORPUS_MB=200 bench/vault.sh   # quick
#
# Target (issue 4): forwarding limited by the network or the disk, not by CPU: at least 300 MB/s of
# recovery-point data on loopback. Issue 11: a restore from the vault tier at least half as fast as one from the
# relay tier, and from `relay rebuild` to the first restored file in under 60 s (a catalog-only rebuild, then a
# restore through the new relay while nothing but the catalog is local). Results go to
# $BENCH_WORK/vault-results.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BIN=${OUTPOST_BIN:-$ROOT/.build-release/release/outpost}
[[ -x $BIN ]] || die "no outpost binary at $BIN: build it with swift build -c release --scratch-path .build-release --product outpost"
make_corpus
RUN=$WORK/vault-run
rm -rf "$RUN"; mkdir -p "$RUN"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 1 600); do [[ -s $1 ]] && { cat "$1"; return; }; sleep 0.05; done; die "no port in $1"; }

say "vault and relay on loopback"
"$BIN" vault init --data "$RUN/vault" --name bench --url https://127.0.0.1:1 --replication lrs >/dev/null 2>&1
"$BIN" vault serve --data "$RUN/vault" --listen 127.0.0.1:0 --port-file "$RUN/vault.port" 2>"$RUN/vault.log" &
PIDS+=($!)
VPORT=$(wait_port "$RUN/vault.port")
"$BIN" vault credentials --data "$RUN/vault" --out "$RUN/creds" --url "https://127.0.0.1:$VPORT" 2>/dev/null
FP=$("$BIN" relay init --data "$RUN/relay" 2>/dev/null)
"$BIN" relay serve --data "$RUN/relay" --listen 127.0.0.1:0 --port-file "$RUN/relay.port" 2>"$RUN/relay.log" &
PIDS+=($!)
RPORT=$(wait_port "$RUN/relay.port")
TOKEN=$("$BIN" relay add-machine --data "$RUN/relay" bench 2>/dev/null)
"$BIN" enroll --relay "https://127.0.0.1:$RPORT" --token "$TOKEN" --fingerprint "$FP" --config "$RUN/client.toml" 2>/dev/null
say "backup of the corpus to the relay (untimed)"
"$BIN" backup --config "$RUN/client.toml" "$CORPUS" >/dev/null
"$BIN" relay register --data "$RUN/relay" --vault-credentials "$RUN/creds" --passphrase-file "$RUN/pass" --generate-passphrase 2>/dev/null
read -r RAW PACKS < <("$BIN" store stats --store "$RUN/relay/store" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["rawBytes"], d["packBytes"])')

sync
say "forward --now"
VAULT_PID=${PIDS[0]}
cpu_of() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }   # user + sys seconds so far
V0=$(cpu_of "$VAULT_PID")
T0=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$RUN/forward.cpu" "$BIN" relay forward --data "$RUN/relay" --now > "$RUN/forward.out"
FWD=$(since "$T0")
FWD_CPU=$(awk '{ printf "%.2f", $1 + $2 }' "$RUN/forward.cpu")
VAULT_CPU=$(awk -v a="$V0" -v b="$(cpu_of "$VAULT_PID")" 'BEGIN { printf "%.2f", b - a }')
cat "$RUN/forward.out" >&2
VAULT_BYTES=$(tree_bytes "$RUN/vault/objects")

sync
say "unencrypted copy of the same packs (cp -r to the same disk)"
T0=$(date +%s.%N)
cp -r "$RUN/relay/store/packs" "$RUN/packs-copy"
CP=$(since "$T0")

sync
say "unencrypted upload of the same packs over the same HTTPS path (curl PUT to the vault, 4 at once)"
# The relay's own credential and the vault's pinned certificate, from DATA/vault/link.json; the packs go under
# bench/ in the relay's container, as they are: no verification, no sealing.
python3 - "$RUN/relay/vault/link.json" "$RUN" <<'PY'
import json, sys
link = json.load(open(sys.argv[1]))
open(sys.argv[2] + "/vault-cert.pem", "w").write(link["certificate"])
open(sys.argv[2] + "/curl-auth", "w").write("header = \"Authorization: Bearer " + link["credential"] + "\"\n")
PY
# The self-signed certificate names no IP address: curl checks its public key instead (--pinnedpubkey), as the
# relay pins the certificate itself.
PIN="sha256//$(openssl x509 -in "$RUN/vault-cert.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
T0=$(date +%s.%N)
find "$RUN/relay/store/packs" -name '*.pack' -print0 |
    xargs -0 -P 4 -I{} sh -c 'curl -sS --fail -K "$1/curl-auth" --insecure --pinnedpubkey "$4" -H "Content-Type: application/octet-stream" -H "Expect:" \
        -T "$2" "https://127.0.0.1:$3/v1/objects/bench/$(basename "$2")" -o /dev/null' _ "$RUN" {} "$VPORT" "$PIN"
PLAIN=$(since "$T0")

VERIFY=$( { "$BIN" relay verify-vault --data "$RUN/relay" >/dev/null 2>&1 && echo intact; } || echo DAMAGED)
# A lost site: a new relay rebuilt from the vault with a recovery credentials file and the passphrase.
say "relay rebuild from the vault (a lost site)"
RELAY_NAME=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["relayID"])' "$RUN/relay/vault/link.json")
"$BIN" vault credentials --data "$RUN/vault" --out "$RUN/recover.creds" --url "https://127.0.0.1:$VPORT" --recover "$RELAY_NAME" 2>/dev/null
sync
T0=$(date +%s.%N)
"$BIN" relay rebuild --data "$RUN/rebuilt" --vault-credentials "$RUN/recover.creds" --passphrase-file "$RUN/pass" > "$RUN/rebuild.out" 2>"$RUN/rebuild.err" \
    || { cat "$RUN/rebuild.err" >&2; die "relay rebuild failed"; }
REBUILD=$(since "$T0")
REBUILT_RAW=$("$BIN" store stats --store "$RUN/rebuilt/store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["rawBytes"])')

# Restore from each tier: the original relay (everything local), and a relay rebuilt catalog-only, which gets
# every chunk from the vault (tier 2). The clock for "first file" starts with the rebuild.
say "restore from the relay tier"
sync
T0=$(date +%s.%N)
"$BIN" restore --config "$RUN/client.toml" latest --target "$RUN/restore-relay" >/dev/null 2>&1 || die "relay-tier restore failed"
RESTORE_RELAY=$(since "$T0")
diff -r -q "$CORPUS" "$RUN/restore-relay$CORPUS" >/dev/null && RELAY_OK=identical || RELAY_OK=DIFFERENT
rm -rf "$RUN/restore-relay"
say "catalog-only rebuild, then a restore of every chunk from the vault tier"
"$BIN" vault credentials --data "$RUN/vault" --out "$RUN/lazy.creds" --url "https://127.0.0.1:$VPORT" --recover "$RELAY_NAME" 2>/dev/null
kill "${PIDS[1]}" 2>/dev/null || true   # the lost site's relay goes away
sync
T0=$(date +%s.%N)
"$BIN" relay rebuild --data "$RUN/lazy" --vault-credentials "$RUN/lazy.creds" --passphrase-file "$RUN/pass" --catalog-only > "$RUN/lazy.out" 2>"$RUN/lazy.err" \
    || { cat "$RUN/lazy.err" >&2; die "catalog-only rebuild failed"; }
CATALOG=$(since "$T0")
LFP=$("$BIN" relay fingerprint --data "$RUN/lazy")
"$BIN" relay serve --data "$RUN/lazy" --listen 127.0.0.1:0 --port-file "$RUN/lazy.port" 2>"$RUN/lazy.log" &
PIDS+=($!)
LPORT=$(wait_port "$RUN/lazy.port")
LTOKEN=$("$BIN" relay add-machine --data "$RUN/lazy" bench 2>/dev/null)
"$BIN" enroll --relay "https://127.0.0.1:$LPORT" --token "$LTOKEN" --fingerprint "$LFP" --config "$RUN/lazy-client.toml" 2>/dev/null
T1=$(date +%s.%N)
"$BIN" restore --config "$RUN/lazy-client.toml" latest --target "$RUN/restore-vault" >/dev/null 2>&1 &
RPID=$!
FIRST=
while kill -0 "$RPID" 2>/dev/null; do
    if [[ -z $FIRST ]] && find "$RUN/restore-vault" -type f ! -name '.outpost-restore-*' -print -quit 2>/dev/null | grep -q .; then
        FIRST=$(since "$T0")
    fi
    sleep 0.01
done
wait "$RPID" || die "vault-tier restore failed (see $RUN/lazy.log)"
RESTORE_VAULT=$(since "$T1")
[[ -n $FIRST ]] || FIRST=$(since "$T0")
diff -r -q "$CORPUS" "$RUN/restore-vault$CORPUS" >/dev/null && VAULT_OK=identical || VAULT_OK=DIFFERENT
rm -rf "$RUN/restore-vault"
say "rehydration of the catalog-only relay (relay rebuild again, while it serves)"
T0=$(date +%s.%N)
"$BIN" relay rebuild --data "$RUN/lazy" --vault-credentials "$RUN/lazy.creds" --passphrase-file "$RUN/pass" > "$RUN/rehydrate.out" 2>"$RUN/rehydrate.err" \
    || { cat "$RUN/rehydrate.err" >&2; die "rehydration failed"; }
REHYDRATE=$(since "$T0")

MB() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
RATE() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / 1e6 / t }'; }
DATA_RATE=$(RATE "$RAW" "$FWD")
{
  echo "# Outpost forwarding relay → vault — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Corpus $(MB "$RAW") MB of recovery-point data, stored on the relay in $(MB "$PACKS") MB of packs; 2 cores, loopback, HTTPS."
  echo
  echo "| | value |"
  echo "|---|---:|"
  echo "| forward --now s | $(f 2 "$FWD") |"
  echo "| recovery-point data forwarded MB/s | $DATA_RATE |"
  echo "| CPU s: forwarder (user + sys) / vault server | $FWD_CPU / $VAULT_CPU |"
  echo "| cores busy during the forward ((forwarder + vault CPU) / wall, of $(nproc)) | $(awk -v a="$FWD_CPU" -v b="$VAULT_CPU" -v t="$FWD" 'BEGIN { printf "%.2f", (a + b) / t }') |"
  echo "| bytes sent (sealed objects) MB | $(MB "$VAULT_BYTES") |"
  echo "| sealed bytes MB/s | $(RATE "$VAULT_BYTES" "$FWD") |"
  echo "| unencrypted cp -r of the packs s | $(f 2 "$CP") ($(RATE "$PACKS" "$CP") MB/s) |"
  echo "| forwarding time / copy time | $(awk -v a="$FWD" -v b="$CP" 'BEGIN { printf "%.2f", a / b }') |"
  echo "| unencrypted upload of the packs to the vault (curl, HTTPS, 4 at once) s | $(f 2 "$PLAIN") ($(RATE "$PACKS" "$PLAIN") MB/s) |"
  echo "| forwarding time / unencrypted upload time (encryption + verification overhead) | $(awk -v a="$FWD" -v b="$PLAIN" 'BEGIN { printf "%.2f", a / b }') |"
  echo "| vault copy after verify-vault | $VERIFY |"
  echo "| relay rebuild from the vault s (recovery-point data MB/s) | $(f 2 "$REBUILD") ($(RATE "$REBUILT_RAW" "$REBUILD")) |"
  echo "| rebuilt store holds all recovery-point data | $([[ $REBUILT_RAW == "$RAW" ]] && echo yes || echo "NO ($REBUILT_RAW of $RAW bytes)") |"
  echo "| restore from the relay tier s (MB/s; $RELAY_OK) | $(f 2 "$RESTORE_RELAY") ($(RATE "$RAW" "$RESTORE_RELAY")) |"
  echo "| catalog-only rebuild s | $(f 2 "$CATALOG") |"
  echo "| restore from the vault tier through the catalog-only relay s (MB/s; $VAULT_OK) | $(f 2 "$RESTORE_VAULT") ($(RATE "$RAW" "$RESTORE_VAULT")) |"
  echo "| vault-tier / relay-tier restore throughput | $(awk -v a="$RESTORE_RELAY" -v b="$RESTORE_VAULT" 'BEGIN { printf "%.2f", a / b }') |"
  echo "| from \`relay rebuild\` to the first restored file s | $(f 2 "$FIRST") |"
  echo "| rehydration afterwards (relay rebuild again) s | $(f 2 "$REHYDRATE") |"
  echo
  awk -v r="$DATA_RATE" 'BEGIN { printf "- forwarding ≥ 300 MB/s of recovery-point data: %s (%.1f)\n", (r >= 300 ? "met" : "MISSED"), r }'
  awk -v a="$RESTORE_RELAY" -v b="$RESTORE_VAULT" 'BEGIN { r = a / b; printf "- vault-tier restore ≥ 0.5 × the relay tier'"'"'s throughput: %s (%.2f)\n", (r >= 0.5 ? "met" : "MISSED"), r }'
  awk -v t="$FIRST" 'BEGIN { printf "- relay rebuild to the first restored file < 60 s: %s (%.1f s)\n", (t < 60 ? "met" : "MISSED"), t }'
} | tee "$WORK/vault-results.md"
