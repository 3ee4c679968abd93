#!/usr/bin/env bash
# bench/console.sh: how long each page of the relay's web console takes (issue 13's target: every page under
# 100 ms on a relay with 100 machines and 10,000 recovery points). A benchmark, not a test; it never builds:
#
#     swift build -c release --build-path .build-release --product outpost
#     bench/console.sh                                         # 100 machines × 100 points, 20 requests a page
#     OUTPOST_BIN=.build/debug/outpost bench/console.sh        # a debug build (say so when quoting its numbers)
#     MACHINES=16 POINTS=3 REPS=5 bench/console.sh             # a quick check of the script (~4 min)
#
# Environment:
#     OUTPOST_BIN  the binary (default .build-release/release/outpost, else .build/release/outpost, else
#                  .build/debug/outpost); the report names it, and whether it is a debug build
#     MACHINES     machines registered and enrolled (default 100)
#     POINTS       recovery points per machine (default 100)
#     SEED_JOBS    backups run at once while seeding (default 2: one per core)
#     REPS         timed requests per page (default 20), after one untimed request on the same connection
#     RESEED       1 = seed a new relay even when a seeded one of the same size is on disk
#     BENCH_WORK   as in compare.sh (default bench/work); the seeded relay is kept in $BENCH_WORK/console-run
#                  (marker console-run/seeded) and reused by the next run of the same size, so that a change of
#                  the console can be measured again without seeding for minutes; logs in
#                  $BENCH_WORK/logs/console/, the report in $BENCH_WORK/console-results.md
#     BENCH_CLEAN  1 = delete the seeded relay at the end
#
# Seeding, through the binary's public commands only (nothing is written into the index behind its back):
# `relay init`; `relay serve` with the console on a port of its own; MACHINES × (`relay add-machine` + `enroll`);
# per machine a folder of 212 small files in 12 folders, and POINTS real `outpost backup` runs of it (each
# appends a line to one file first, so that points differ), SEED_JOBS machines at a time (niced, so that other
# work on the machine keeps its share). Then some jobs and
# alerts: `relay check` (a job), a protection group with a schedule 2 minutes ahead and no grace for 10 machines
# (missed-backup alerts and `missed` jobs once the time passes), `relay backup-now` for 5 machines whose job no
# agent takes within [jobs] backup_now_minutes = 1 (failed jobs, job-failed alerts), a group with a far
# schedule for 20 more, and an administrator. The script waits (up to 4 minutes) for the alerts to open.
#
# Measurement: log in as the administrator with curl (POST /login, the session cookie in a jar, as
# Tests/OutpostEndToEndTests/ConsoleEndToEndTests.swift does), then per page one curl invocation asking the URL
# 1 + REPS times on one kept-alive HTTPS connection: the first answer (with the TLS handshake) is not counted,
# the REPS others are (`-w %{time_total}`: request sent to last byte received); the table gives their median
# and max in ms, the answer's size and status. The relay is otherwise idle (no pushes; its alert check runs
# every 5 s). A row for the login form gives the floor: HTTPS and an empty page.

set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # ROOT, WORK, LOGS, say, die, since, run
if [[ -n ${OUTPOST_BIN:-} ]]; then
    OUTPOST=$OUTPOST_BIN
else
    OUTPOST=$ROOT/.build/debug/outpost
    for b in "$ROOT/.build-release/release/outpost" "$ROOT/.build/release/outpost"; do
        if [[ -x $b ]]; then OUTPOST=$b; break; fi
    done
fi
MACHINES=${MACHINES:-100}
POINTS=${POINTS:-100}
SEED_JOBS=${SEED_JOBS:-2}
REPS=${REPS:-20}
RESEED=${RESEED:-0}
BENCH_CLEAN=${BENCH_CLEAN:-0}
RUN=$WORK/console-run
DATA=$RUN/relay
SRC=$RUN/machines
CLOGS=$LOGS/console
RESULTS=$WORK/console-results.md
SEEDED=$RUN/seeded
WANT="machines=$MACHINES points=$POINTS"
ADMIN=bench
PASSWORD=console-benchmark-password

SERVE_PID=
WORKERS=()

# ---------------------------------------------------------------------------------------------------------
# The relay

alive() {
    local state
    state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# relay_up: `relay serve` on the seeded data directory, machines' and console's listeners on free ports; sets
# PORT, CPORT and FP.
relay_up() {
    local log=$CLOGS/serve.log i
    rm -f -- "$RUN/port" "$RUN/cport"
    printf '\n$ relay serve (%s)\n' "$(date -u '+%H:%M:%S')" >>"$log"
    "$OUTPOST" relay serve --data "$DATA" --listen 127.0.0.1:0 --port-file "$RUN/port" \
        --console-listen 127.0.0.1:0 --console-port-file "$RUN/cport" </dev/null >>"$log" 2>&1 &
    SERVE_PID=$!
    for ((i = 0; i < 600; i++)); do
        [[ -s $RUN/port && -s $RUN/cport ]] && break
        if ! alive "$SERVE_PID"; then tail -n 25 "$log" >&2; die "relay serve exited early (see $log)"; fi
        sleep 0.1
    done
    [[ -s $RUN/port && -s $RUN/cport ]] || die "relay serve wrote no ports within 60 s (see $log)"
    PORT=$(tr -d '[:space:]' <"$RUN/port")
    CPORT=$(tr -d '[:space:]' <"$RUN/cport")
    FP=$("$OUTPOST" relay fingerprint --data "$DATA")
    say "relay serve (pid $SERVE_PID): machines on https://127.0.0.1:$PORT, console on https://127.0.0.1:$CPORT"
}

relay_down() {
    [[ -n $SERVE_PID ]] || return 0
    kill -TERM "$SERVE_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 300; i++)); do alive "$SERVE_PID" || break; sleep 0.1; done
    kill -KILL "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
    SERVE_PID=
}

cleanup() {
    local pid
    for pid in "${WORKERS[@]}"; do
        # the worker, then the backup it runs (by their ids)
        local child; child=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
        kill -TERM "$pid" $child 2>/dev/null || true
    done
    for pid in "${WORKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    relay_down
    rm -f -- "$WORK/console-outpost"
    if [[ $BENCH_CLEAN == 1 ]]; then rm -rf -- "$RUN"; fi
}

# open_alerts: how many alerts are open (`relay alerts` exits 3 when some are)
open_alerts() {
    { "$OUTPOST" relay alerts --data "$DATA" --json 2>>"$CLOGS/alerts.log" || true; } |
        python3 -c 'import json, sys
try: print(len(json.load(sys.stdin)["alerts"]))
except ValueError: print(0)'
}

# ---------------------------------------------------------------------------------------------------------
# Seeding

machine_name() { printf 'm%03d' "$1"; }

# make_source M: the machine's folder: docs/ with 10 folders of 20 notes, photos/ with 10 small files, a
# changes.log each backup appends to, and a 4 KiB download.txt (the download measured).
make_source() {
    local dir=$SRC/$(machine_name "$1") d j
    mkdir -p "$dir/docs" "$dir/photos"
    for d in $(seq -w 1 10); do
        mkdir -p "$dir/docs/folder-$d"
        for j in $(seq -w 1 20); do
            printf 'machine %s, note %s/%s\n' "$1" "$d" "$j" >"$dir/docs/folder-$d/note-$j.txt"
        done
        printf 'picture %s of machine %s\n' "$d" "$1" >"$dir/photos/img-$d.jpg"
    done
    head -c 4096 /dev/zero | tr '\0' 'x' >"$dir/download.txt"
    : >"$dir/changes.log"
}

# seed_worker K: the backups of machines K, K + SEED_JOBS, …: POINTS each, one after the other.
seed_worker() {
    local k=$1 m name log=$CLOGS/seed-$1.log i
    for ((m = k; m <= MACHINES; m += SEED_JOBS)); do
        name=$(machine_name "$m")
        for ((i = 1; i <= POINTS; i++)); do
            echo "backup $i" >>"$SRC/$name/changes.log"
            run "$log" nice -n 10 "$OUTPOST" backup --config "$RUN/$name.toml" "$SRC/$name"
        done
        echo "$name $(date +%s)" >>"$RUN/seed-done"
    done
}

seed() {
    say "seeding a relay with $MACHINES machines × $POINTS recovery points ($SEED_JOBS backups at once)"
    relay_down
    rm -rf -- "$RUN" "$CLOGS"
    mkdir -p "$RUN" "$CLOGS" "$SRC"
    local t0; t0=$(date +%s.%N)
    "$OUTPOST" relay init --data "$DATA" >"$CLOGS/init.log" 2>&1 || die "relay init failed (see $CLOGS/init.log)"
    # The alert check every 5 s, missed backups without grace, backup-now jobs failed after a minute.
    printf '\n[jobs]\nbackup_now_minutes = 1\n\n[alerts]\ncheck_interval_seconds = 5\nmissed_grace_minutes = 0\n' >>"$DATA/relay.toml"
    relay_up

    local m name token
    for ((m = 1; m <= MACHINES; m++)); do
        name=$(machine_name "$m")
        token=$("$OUTPOST" relay add-machine --data "$DATA" "$name" 2>>"$CLOGS/enroll.log")
        run "$CLOGS/enroll.log" "$OUTPOST" enroll --relay "https://127.0.0.1:$PORT" --token "$token" --fingerprint "$FP" \
            --config "$RUN/$name.toml"
        make_source "$m"
    done
    local enrolled; enrolled=$(since "$t0")
    say "$MACHINES machines enrolled, their folders made: $enrolled s"

    # The rate first: the first machine's first 5 backups alone.
    local t1 k n; t1=$(date +%s.%N)
    name=$(machine_name 1)
    for ((k = 1; k <= 5 && k <= POINTS; k++)); do
        echo "probe $k" >>"$SRC/$name/changes.log"
        run "$CLOGS/seed-probe.log" "$OUTPOST" backup --config "$RUN/$name.toml" "$SRC/$name"
    done
    PROBE=$(awk -v t="$(since "$t1")" -v n=$((k - 1)) 'BEGIN { printf "%.3f", t / n }')
    say "one backup alone: $PROBE s; $((MACHINES * POINTS)) backups, $SEED_JOBS at once: about" \
        "$(awk -v p="$PROBE" -v n=$((MACHINES * POINTS)) -v j="$SEED_JOBS" 'BEGIN { printf "%.0f", p * n / (j > 1 ? j * 0.7 : 1) / 60 }') min"

    local t2; t2=$(date +%s.%N)
    : >"$RUN/seed-done"
    for ((k = 1; k <= SEED_JOBS; k++)); do
        seed_worker "$k" &
        WORKERS+=($!)
    done
    local pid failed=0 last=0
    while :; do
        n=$(wc -l <"$RUN/seed-done")
        if ((n >= last + 10 || n == MACHINES)) && ((n != last)); then
            say "seeded $n of $MACHINES machines ($(since "$t2") s)"
            last=$n
        fi
        local running=0
        for pid in "${WORKERS[@]}"; do alive "$pid" && running=1; done
        ((running)) || break
        sleep 2
    done
    for pid in "${WORKERS[@]}"; do wait "$pid" || failed=1; done
    WORKERS=()
    say "seeded $(wc -l <"$RUN/seed-done") of $MACHINES machines ($(since "$t2") s)"
    ((failed == 0)) || die "a seeding backup failed (see $CLOGS/seed-*.log)"
    local backups; backups=$(since "$t2")
    say "$((MACHINES * POINTS)) backups (and 5 probes of $(machine_name 1)): $backups s"

    # Jobs and alerts.
    run "$CLOGS/extra.log" "$OUTPOST" relay check --data "$DATA"
    # The late group's planned time: 2 minutes from now, and 5 minutes after its machines' last backups (the
    # alert check counts a backup that started up to 5 minutes after a planned time as covering it).
    local done_at; done_at=$(awk '$1 <= "m010" { if ($2 > t) t = $2 } END { print t + 0 }' "$RUN/seed-done")
    local at=$(($(date +%s) + 120)); ((done_at + 420 > at)) && at=$((done_at + 420))
    at=$(((at + 59) / 60 * 60))
    local soon; soon=$(date -d "@$at" '+%H:%M')
    local late=() far=()
    for ((m = 1; m <= 10 && m <= MACHINES; m++)); do late+=(--machine "$(machine_name "$m")"); done
    for ((m = 11; m <= 30 && m <= MACHINES; m++)); do far+=(--machine "$(machine_name "$m")"); done
    run "$CLOGS/extra.log" "$OUTPOST" relay group create --data "$DATA" late --schedule "daily $soon" --path /srv "${late[@]}"
    if ((${#far[@]})); then
        run "$CLOGS/extra.log" "$OUTPOST" relay group create --data "$DATA" office --schedule "mon-fri 22:30" --path /srv "${far[@]}"
    fi
    for ((m = MACHINES; m > MACHINES - 5 && m > 0; m--)); do
        run "$CLOGS/extra.log" "$OUTPOST" relay backup-now --data "$DATA" --machine "$(machine_name "$m")"
    done
    printf '%s\n' "$PASSWORD" >"$RUN/password"
    run "$CLOGS/extra.log" "$OUTPOST" relay admin add --data "$DATA" "$ADMIN" --password-file "$RUN/password"
    say "waiting for the missed-backup (daily $soon) and job-failed alerts to open"
    local want=$(( (MACHINES < 10 ? MACHINES : 10) + (MACHINES < 5 ? MACHINES : 5) )) open=0
    while :; do
        open=$(open_alerts)
        ((open >= want || $(date +%s) > at + 120)) && break
        sleep 2
    done
    say "$open alerts open"
    SEED_S=$(since "$t0")
    printf '%s\nseeded %s in %s s (enrolment %s s, backups %s s, one backup alone %s s) with %s\n' \
        "$WANT" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$SEED_S" "$enrolled" "$backups" "$PROBE" "$BIN_SRC" >"$SEEDED"
}

# ---------------------------------------------------------------------------------------------------------
# Measurement

# login: a session for the administrator in the cookie jar
login() {
    JAR=$RUN/jar
    rm -f -- "$JAR"
    local code
    code=$(curl -sk -b "$JAR" -c "$JAR" -o /dev/null -w '%{http_code}' \
        --data-urlencode "name=$ADMIN" --data-urlencode "password=$PASSWORD" "https://127.0.0.1:$CPORT/login")
    [[ $code == 303 ]] || die "logging in as $ADMIN answered $code, not 303"
}

# time_page LABEL PATH: the page asked 1 + REPS times on one connection; a row of the table
time_page() {
    local label=$1 url=https://127.0.0.1:$CPORT$2 args=() i
    for ((i = 0; i <= REPS; i++)); do args+=(-o /dev/null "$url"); done
    local out; out=$(curl -sk -b "$JAR" -w '%{http_code} %{time_total} %{size_download} %{num_connects}\n' "${args[@]}")
    printf '\n%s %s\n%s\n' "$label" "$2" "$out" >>"$CLOGS/pages.log"
    local status; status=$(awk 'NR > 1 { print $1 }' <<<"$out" | sort -u | paste -sd /)
    local conns; conns=$(awk 'NR > 1 { n += $4 } END { print n + 0 }' <<<"$out")
    local stats
    stats=$(awk 'NR > 1 { print $2 * 1000 }' <<<"$out" | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f %.1f", m, v[NR] }')
    local median=${stats% *} max=${stats#* } size; size=$(awk 'NR == 2 { print $3 }' <<<"$out")
    local verdict=met
    awk -v m="$max" 'BEGIN { exit !(m >= 100) }' && verdict=MISSED
    [[ $status == 200 ]] || verdict="status $status"
    ((conns == 0)) || verdict="$verdict ($conns new connections)"
    local shown=${2//$POINT/ID}
    ROWS+="| $label | \`${shown//$SRC/SRC}\` | $median | $max | $size | $verdict |"$'\n'
    say "$label: median $median ms, max $max ms ($size bytes, $status)"
}

# json_field KEY: KEY of the JSON object on stdin, or of the first of a JSON list
json_field() { python3 -c 'import json, sys; d = json.load(sys.stdin); d = d[0] if isinstance(d, list) else d; print(d[sys.argv[1]])' "$1"; }

# job_count: the relay's jobs (read-only from the index with sqlite3 when it is installed: `relay jobs` lists
# the newest 1000 at most)
job_count() {
    if command -v sqlite3 >/dev/null; then
        sqlite3 -readonly "$DATA/store/index.sqlite" 'SELECT COUNT(*) FROM jobs'
    else
        echo "at least $("$OUTPOST" relay jobs --data "$DATA" --json | json_count)"
    fi
}

# json_count: the length of the JSON list on stdin
json_count() { python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }

measure() {
    login
    local name; name=$(machine_name $(((MACHINES + 1) / 2)))
    POINT=$("$OUTPOST" relay points --data "$DATA" --machine "$name" --json | python3 -c \
        'import json, sys; print(json.load(sys.stdin)[-1]["id"])')
    local job; job=$("$OUTPOST" relay jobs --data "$DATA" --machine "$name" --json | json_field id)
    local top=$SRC/$name
    ROWS=
    time_page "login form (floor)" /login
    time_page overview /
    time_page "machine ($POINTS points)" "/machines/$name"
    time_page "job (a backup)" "/jobs/$job"
    time_page alerts /alerts
    time_page "browse: the point's root" "/points/$POINT/browse"
    time_page "browse: a folder (20 files)" "/points/$POINT/browse?path=$top/docs/folder-05"
    time_page "search (name contains \"note-1\")" "/points/$POINT/browse?path=/&q=note-1"
    time_page "download (4 KiB file)" "/points/$POINT/file?path=$top/download.txt"
}

report() {
    local debug=release
    [[ $BIN_SRC == */debug/* ]] && debug="DEBUG build: release would be faster for the Swift side (SQLite the same)"
    {
        echo "# Outpost console pages — $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "Binary: $BIN_SRC ($debug), version $("$OUTPOST" --version 2>/dev/null || echo '?');" \
             "$(nproc) cores; load average (1 min) before $LOAD_START, after $(cut -d ' ' -f 1 /proc/loadavg)."
        echo "Relay: $(sed -n 2p "$SEEDED")."
        echo "Now: $MACHINES machines, $("$OUTPOST" relay points --data "$DATA" --json | json_count) recovery points," \
             "$(job_count) jobs, $(open_alerts) open alerts."
        echo "Each page: 1 untimed request, then $REPS on the same HTTPS connection (curl %{time_total}); target: every" \
             "page under 100 ms."
        echo
        echo "ID is the newest point of $(machine_name $(((MACHINES + 1) / 2))); SRC is $SRC, where each machine has its folder."
        echo
        echo "| page | path | median ms | max ms | bytes | < 100 ms |"
        echo "|---|---|---:|---:|---:|---|"
        printf '%s' "$ROWS"
    } | tee "$RESULTS"
}

# ---------------------------------------------------------------------------------------------------------
# Main

[[ -x $OUTPOST ]] || die "no Outpost binary at $OUTPOST (swift build -c release --build-path .build-release --product outpost; or set OUTPOST_BIN)"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A copy of the binary is run, so that a build replacing it meanwhile ("Text file busy") changes nothing.
BIN_SRC=$OUTPOST
OUTPOST=$WORK/console-outpost
cp -- "$BIN_SRC" "$OUTPOST"
"$OUTPOST" relay admin --help >/dev/null 2>&1 || die "$BIN_SRC has no console (\`relay admin\`): an old build?"
LOAD_START=$(cut -d ' ' -f 1 /proc/loadavg)
mkdir -p "$CLOGS"
: >"$CLOGS/pages.log"

if [[ $RESEED != 1 && -f $SEEDED && $(head -n 1 "$SEEDED") == "$WANT" ]]; then
    say "reusing the seeded relay in $RUN ($(sed -n 2p "$SEEDED"))"
    relay_up
else
    seed
fi
measure
relay_down
echo
report
