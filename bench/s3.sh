#!/usr/bin/env bash
# bench/s3.sh: the vault on S3 against the vault on the filesystem (issue 14). A single-node Ceph cluster on
# loopback (Deploy/ceph.sh: RGW over a memstore OSD, so the disk is RAM), a filesystem vault and an S3 vault
# served side by side, and one relay's store copied so that each vault gets the same recovery points in the same
# run. A benchmark, not a test, and not run by CI. It measures:
#   - `relay forward --now` to each vault, and its throughput ratio (target: S3 within 2x of the filesystem);
#   - the S3 requests that forwarding cost, from RGW's own counters (perf dump), per GB forwarded;
#   - the time to list a container of LIST_OBJECTS (default 100,000) small objects through the vault's list
#     route (GET /v1/list: ListObjectsV2 pages of 1000 on S3, a directory walk on the filesystem), after
#     uploading them through the vault (curl, 8 at once).
#
#     bench/s3.sh                           # the 2000 MB corpus of compare.sh / vault.sh
#     LIST_OBJECTS=10000 bench/s3.sh        # quicker listing part
#
# The binary: OUTPOST_BIN, else the release build at .build-release when it has S3 storage, else the debug build
# at .build/debug (said in the report: a debug build is several times slower). Needs Ceph (Deploy/install-deps.sh),
# python3, curl and openssl. Results go to $BENCH_WORK/s3-results.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LIST_OBJECTS=${LIST_OBJECTS:-100000}
if [[ -n ${OUTPOST_BIN:-} ]]; then
    BIN=$OUTPOST_BIN BUILD="$OUTPOST_BIN"
elif "$ROOT/.build-release/release/outpost" vault init --help 2>/dev/null | grep -q -- --s3-endpoint; then
    BIN=$ROOT/.build-release/release/outpost BUILD="release build"
else
    BIN=$ROOT/.build/debug/outpost BUILD="DEBUG build (no release build with S3 storage at .build-release)"
fi
[[ -x $BIN ]] || die "no outpost binary at $BIN: build it with swift build -c release --scratch-path .build-release --product outpost"
make_corpus
RUN=$WORK/s3-run
rm -rf "$RUN"; mkdir -p "$RUN"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bash "$ROOT/Deploy/ceph.sh" stop "$RUN/ceph" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 1 600); do [[ -s $1 ]] && { cat "$1"; return; }; sleep 0.05; done; die "no port in $1"; }
cpu_of() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }   # user + sys seconds so far
RGW_ASOK=$RUN/ceph/run/client.rgw.asok
# RGW's request counters: requests, GETs, PUTs, bytes put (every S3 call is one request; lists and deletes
# count only in the first).
rgw_counters() {
    ceph --admin-daemon "$RGW_ASOK" perf dump | python3 -c 'import json,sys; r=json.load(sys.stdin)["rgw"]; print(r["req"], r["get"], r["put"], r["put_b"])'
}

say "ceph on loopback (Deploy/ceph.sh)"
bash "$ROOT/Deploy/ceph.sh" start "$RUN/ceph"
# shellcheck disable=SC1091
source "$RUN/ceph/env"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$RUN/s3.creds"
chmod 600 "$RUN/s3.creds"

say "a filesystem vault and an S3 vault"
"$BIN" vault init --data "$RUN/vfs" --name fs --url https://127.0.0.1:1 --replication lrs >/dev/null 2>&1
"$BIN" vault init --data "$RUN/vs3" --name s3 --url https://127.0.0.1:1 --storage s3 --s3-endpoint "$S3_ENDPOINT" \
    --s3-bucket bench-vault --s3-credentials "$RUN/s3.creds" >/dev/null 2>&1
declare -A VPORT VPID
for v in vfs vs3; do
    "$BIN" vault serve --data "$RUN/$v" --listen 127.0.0.1:0 --port-file "$RUN/$v.port" 2>"$RUN/$v.log" &
    PIDS+=($!)
    VPID[$v]=$!
    VPORT[$v]=$(wait_port "$RUN/$v.port")
done

say "backup of the corpus to a relay (untimed), its data directory copied for the second vault"
FP=$("$BIN" relay init --data "$RUN/relay-vfs" 2>/dev/null)
"$BIN" relay serve --data "$RUN/relay-vfs" --listen 127.0.0.1:0 --port-file "$RUN/relay.port" 2>"$RUN/relay.log" &
RELAY_PID=$!
RPORT=$(wait_port "$RUN/relay.port")
TOKEN=$("$BIN" relay add-machine --data "$RUN/relay-vfs" bench 2>/dev/null)
"$BIN" enroll --relay "https://127.0.0.1:$RPORT" --token "$TOKEN" --fingerprint "$FP" --config "$RUN/client.toml" 2>/dev/null
"$BIN" backup --config "$RUN/client.toml" "$CORPUS" >/dev/null
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
cp -a "$RUN/relay-vfs" "$RUN/relay-vs3"
read -r RAW PACKS < <("$BIN" store stats --store "$RUN/relay-vfs/store" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["rawBytes"], d["packBytes"])')
for v in vfs vs3; do
    "$BIN" vault credentials --data "$RUN/$v" --out "$RUN/$v.creds" --url "https://127.0.0.1:${VPORT[$v]}" 2>/dev/null
    "$BIN" relay register --data "$RUN/relay-$v" --vault-credentials "$RUN/$v.creds" --passphrase-file "$RUN/$v.pass" \
        --generate-passphrase --name "bench-$v" --fast-kdf-for-tests 2>/dev/null
done

declare -A FWD VCPU
for v in vfs vs3; do
    sync
    say "forward --now to $v"
    [[ $v == vs3 ]] && read -r REQ0 GET0 PUT0 PUTB0 < <(rgw_counters)
    C0=$(cpu_of "${VPID[$v]}")
    T0=$(date +%s.%N)
    "$BIN" relay forward --data "$RUN/relay-$v" --now >"$RUN/forward-$v.out"
    FWD[$v]=$(since "$T0")
    VCPU[$v]=$(awk -v a="$C0" -v b="$(cpu_of "${VPID[$v]}")" 'BEGIN { printf "%.2f", b - a }')
    [[ $v == vs3 ]] && read -r REQ1 GET1 PUT1 PUTB1 < <(rgw_counters)
    cat "$RUN/forward-$v.out" >&2
done
REQ=$((REQ1 - REQ0)) GETS=$((GET1 - GET0)) PUTS=$((PUT1 - PUT0)) SEALED=$((PUTB1 - PUTB0))

# The relay's credential and the vault's pinned certificate (as bench/vault.sh): curl PUTs and GETs through the
# vault's own routes.
curl_setup() {
    python3 - "$RUN/relay-$1/vault/link.json" "$RUN/$1" <<'PY'
import json, sys
link = json.load(open(sys.argv[1]))
open(sys.argv[2] + "-cert.pem", "w").write(link["certificate"])
open(sys.argv[2] + "-auth", "w").write("header = \"Authorization: Bearer " + link["credential"] + "\"\n")
PY
    echo "sha256//$(openssl x509 -in "$RUN/$1-cert.pem" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
}
head -c 200 /dev/urandom >"$RUN/small-object"
declare -A UPLOAD LIST LISTED
for v in vfs vs3; do
    PIN=$(curl_setup "$v")
    say "$LIST_OBJECTS small objects into $v's container (curl, 8 at once)"
    # 8 curl processes, each with a config of its share of the URLs (one connection each, reused).
    python3 - "$RUN" "$v" "${VPORT[$v]}" "$LIST_OBJECTS" <<'PY'
import sys
run, v, port, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
files = [open(f"{run}/{v}-urls-{i}", "w") for i in range(8)]
for k in range(n):
    f = files[k % 8]
    f.write(f'url = "https://127.0.0.1:{port}/v1/objects/list-bench/{k % 256:02x}/{k:07d}"\n')
    f.write(f'upload-file = "{run}/small-object"\noutput = "/dev/null"\n')
PY
    T0=$(date +%s.%N)
    CURLS=()
    for i in 0 1 2 3 4 5 6 7; do
        curl -sS --fail -K "$RUN/$v-auth" --insecure --pinnedpubkey "$PIN" -H "Content-Type: application/octet-stream" -H "Expect:" \
            -K "$RUN/$v-urls-$i" &
        CURLS+=($!)
    done
    failed=0
    for p in "${CURLS[@]}"; do wait "$p" || failed=1; done
    [[ $failed == 0 ]] || die "uploading the small objects to $v failed"
    UPLOAD[$v]=$(since "$T0")
    say "listing them through the vault"
    T0=$(date +%s.%N)
    curl -sS --fail -K "$RUN/$v-auth" --insecure --pinnedpubkey "$PIN" "https://127.0.0.1:${VPORT[$v]}/v1/list?prefix=list-bench/" -o "$RUN/$v-list.json"
    LIST[$v]=$(since "$T0")
    LISTED[$v]=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$RUN/$v-list.json")
done
[[ ${LISTED[vs3]} == "$LIST_OBJECTS" && ${LISTED[vfs]} == "$LIST_OBJECTS" ]] || say "WARNING: listed ${LISTED[vfs]} (fs) and ${LISTED[vs3]} (s3) of $LIST_OBJECTS"
read -r REQ2 _ _ _ < <(rgw_counters)
LIST_REQ=$((REQ2 - REQ1))

MB() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
RATE() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / 1e6 / t }'; }
PER_GB() { awk -v n="$1" -v b="$2" 'BEGIN { printf "%.0f", n / (b / 1e9) }'; }
RATIO=$(awk -v a="${FWD[vs3]}" -v b="${FWD[vfs]}" 'BEGIN { printf "%.2f", a / b }')
{
    echo "# Outpost vault on S3 (Ceph RGW) against the filesystem — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Binary: $BUILD. Corpus $(MB "$RAW") MB of recovery-point data in $(MB "$PACKS") MB of packs; $(nproc) cores, loopback."
    echo "Ceph $(ceph --version | awk '{ print $3 }'): one mon, one memstore OSD, radosgw (Deploy/ceph.sh)."
    echo
    echo "| | filesystem vault | S3 vault (Ceph RGW) |"
    echo "|---|---:|---:|"
    echo "| forward --now s | $(f 2 "${FWD[vfs]}") | $(f 2 "${FWD[vs3]}") |"
    echo "| recovery-point data forwarded MB/s | $(RATE "$RAW" "${FWD[vfs]}") | $(RATE "$RAW" "${FWD[vs3]}") |"
    echo "| vault server CPU s during the forward | ${VCPU[vfs]} | ${VCPU[vs3]} |"
    echo "| S3 requests for the forward (GET / PUT) | | $REQ ($GETS / $PUTS) |"
    echo "| S3 requests per GB of recovery-point data / per GB of sealed bytes | | $(PER_GB "$REQ" "$RAW") / $(PER_GB "$REQ" "$SEALED") |"
    echo "| sealed bytes put MB | | $(MB "$SEALED") |"
    echo "| $LIST_OBJECTS objects of 200 B put through the vault (8 at once) s | $(f 1 "${UPLOAD[vfs]}") | $(f 1 "${UPLOAD[vs3]}") |"
    echo "| list them (GET /v1/list, one request) s | $(f 2 "${LIST[vfs]}") | $(f 2 "${LIST[vs3]}") |"
    echo "| S3 requests for the upload and the list | | $LIST_REQ |"
    echo
    awk -v r="$RATIO" 'BEGIN { printf "- forwarding to S3 within 2x of the filesystem: %s (%.2f x the time)\n", (r <= 2 ? "met" : "MISSED"), r }'
} | tee "$WORK/s3-results.md"
