#!/usr/bin/env bash
# bench/gc.sh: garbage collection on a store of about a million chunks (issue 11): time and peak memory of
# `outpost store gc` after half of the data was forgotten, the store otherwise idle. A benchmark, not a test;
# build a release binary first:
#
#     swift build -c release --scratch-path .build-release --product outpost
#     bench/gc.sh                    # 1,000,000 files of 1 KiB: one chunk each
#     GC_FILES=100000 bench/gc.sh    # quick
#
# Each file is below the chunker's minimum, so it is one chunk. Results go to $BENCH_WORK/gc-results.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BIN=${OUTPOST_BIN:-$ROOT/.build-release/release/outpost}
[[ -x $BIN ]] || die "no outpost binary at $BIN: build it with swift build -c release --scratch-path .build-release --product outpost"
FILES=${GC_FILES:-1000000}
RUN=$WORK/gc-run
DATA=$WORK/gc-corpus-$FILES
rm -rf "$RUN"; mkdir -p "$RUN"
trap 'rm -rf "$RUN"' EXIT

if [[ ! -f $DATA.ready ]]; then
    say "making $FILES files of 1 KiB in $DATA (once)"
    rm -rf "$DATA"
    python3 - "$DATA" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "%03d" % (i // 1000 % 1000), "%03d" % (i // 1000000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d" % i), "wb") as f:
        f.write(os.urandom(1024))
PY
    touch "$DATA.ready"
fi

say "store init and a first backup of $FILES files"
"$BIN" store init --store "$RUN/store" >/dev/null
T0=$(date +%s.%N)
"$BIN" backup --store "$RUN/store" --machine bench "$DATA" >/dev/null 2>&1 || die "first backup failed"
B1=$(since "$T0")
FIRST=$("$BIN" points --store "$RUN/store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

say "a second backup of half of the files, and the first point forgotten"
find "$DATA" -mindepth 1 -maxdepth 1 -type d | sort | awk 'NR % 2 == 0' > "$RUN/half"
mapfile -t HALF < "$RUN/half"
"$BIN" backup --store "$RUN/store" --machine bench "${HALF[@]}" >/dev/null 2>&1 || die "second backup failed"
"$BIN" forget --store "$RUN/store" --machine bench "$FIRST" >/dev/null
read -r BLOBS PACKBYTES < <("$BIN" store stats --store "$RUN/store" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["blobs"], d["packBytes"])')

say "store gc (grace 0: the store is idle) on $BLOBS blobs"
sync
T0=$(date +%s.%N)
/usr/bin/time -f "%M %U %S" -o "$RUN/gc.time" "$BIN" store gc --store "$RUN/store" --grace-hours 0 --json > "$RUN/gc.json"
GC=$(since "$T0")
read -r RSS U S < "$RUN/gc.time"
read -r DEAD FREED < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["deadBlobs"], d["bytesFreed"])' "$RUN/gc.json")
CHECK=$( { "$BIN" check --store "$RUN/store" >/dev/null 2>&1 && echo clean; } || echo DAMAGED)
{
  echo "# Outpost gc on a store of $BLOBS blobs — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "$FILES files of 1 KiB (one chunk each) backed up, then half of them again, the first point forgotten; 2 cores."
  echo
  echo "| | value |"
  echo "|---|---:|"
  echo "| first backup s | $(f 2 "$B1") |"
  echo "| blobs in the store before gc | $BLOBS |"
  echo "| packs MB before gc | $(awk -v b="$PACKBYTES" 'BEGIN { printf "%.1f", b / 1e6 }') |"
  echo "| store gc s | $(f 2 "$GC") |"
  echo "| gc CPU s (user + sys) | $(awk -v u="$U" -v s="$S" 'BEGIN { printf "%.2f", u + s }') |"
  echo "| gc peak RSS MiB | $(awk -v k="$RSS" 'BEGIN { printf "%.1f", k / 1024 }') |"
  echo "| blobs removed / bytes freed MB | $DEAD / $(awk -v b="$FREED" 'BEGIN { printf "%.1f", b / 1e6 }') |"
  echo "| check after gc | $CHECK |"
} | tee "$WORK/gc-results.md"
