#!/usr/bin/env bash
# bench/relay.sh: benchmark Outpost's client → relay path on loopback, against restic → `rclone serve restic`,
# on a large-file and a small-file corpus, and 8 machines pushing to one relay at once.
#
# This is a benchmark, not a test. It never builds Outpost: build a release binary first, then run it from
# anywhere, as root (it installs rclone and restic with apt-get when they are missing; as root it can also
# restore onto fresh loop-mounted file systems):
#
#     swift build -c release --build-path .build-release --product outpost
#     bench/relay.sh                                  # 2000 MB + 430 MB corpora; 8 machines × 1000 MB at once
#     OUTPOST_BIN=/path/to/outpost bench/relay.sh     # another binary
#     CORPUS_MB=100 SMALL_MB=40 CONCURRENT_MB=50 MACHINES=2 ROUNDS=1 bench/relay.sh   # quick check of the script
#
# Environment:
#     OUTPOST_BIN    the Outpost binary (default .build-release/release/outpost)
#     CORPORA        the corpora part A runs on, in order (default "large small"); each gets its own section of
#                    the report. Part B always uses the large one.
#     CORPUS_MB      as in compare.sh (default 2000): the large-file corpus, built by bench/lib.sh and reused
#                    through its marker file (a corpus of another size is rebuilt)
#     SMALL_MB       as in compare.sh (default 430): the small-file corpus (system files, most under 16 KiB)
#     BENCH_WORK     as in compare.sh (default bench/work); results go to $BENCH_WORK/relay-results.md, the
#                    tools' logs to $BENCH_WORK/logs/relay/ (part A's under a folder per corpus); scratch
#                    (repositories, restores) to $BENCH_WORK/relay-run, deleted at the end
#     BENCH_CLEAN    1 = also delete the corpora (and their .tar.zst floor archives) at the end
#     CONCURRENT_MB  data each machine pushes in part B (default 1000): a copy of the large corpus's first files
#                    (path order) up to this many MB, or the corpus itself when it is smaller
#     MACHINES       machines pushing at once in part B (default 8)
#     PARTS          the parts to run: AB (default), A or B (the report says which part did not run)
#     ROUNDS         interleaved rounds of part A per corpus (default 3); the report gives each median and all rounds
#
# A. One machine, once per corpus: Outpost client → `outpost relay serve` over HTTPS (self-signed, pinned) vs
#    restic → `rclone serve restic` over plain HTTP, each with a fresh repository, the server pinned to one CPU
#    and the client to another with taskset (as on two machines; unpinned, and said so, with fewer than 2 CPUs):
#    first backup, no-change backup, full restore into a fresh target (fresh_target in lib.sh: a new
#    loop-mounted ext4; checked with diff -r --no-dereference and a metadata listing), repository size (du -sb;
#    Outpost's is DATA/store), peak RSS of the client (GNU time %M) and of the server (VmHWM from /proc just
#    before it is stopped, so over all three steps). For the first backup and the restore, CPU seconds of the
#    client (GNU time %U + %S) and of the server (utime + stime from /proc/PID/stat just before and just after
#    the step), reported per GB of corpus (bytes / 1e9). Floors, each round, on the client's CPU: the restore
#    floor `zstd -dc corpus.tar.zst | tar -x` into a fresh target (restore_floor in lib.sh), `cp -a` of the
#    corpus into a fresh target, and Outpost's first backup into a local store at the push level (2): the
#    client's own work without the network and the relay's re-verification.
# B. Concurrency, on the large corpus: one push of the subset to a fresh relay (single-push throughput), then
#    MACHINES machines (enrolled beforehand) pushing the same subset at once to another fresh relay: wall time
#    until all finish, aggregate throughput = MACHINES × bytes / wall, dedup ratio = MACHINES × bytes / rawBytes
#    stored (`outpost store stats`), relay VmHWM. Nothing is pinned: the clients and the relay share the
#    machine's cores, so the aggregate/single ratio compares bytes per second, not per-machine speed.
# The corpus is read into the page cache, untimed, before each timed backup and copy (warm_corpus: this machine's
# DAMON reclaim evicts cold pages between steps; caches cannot be dropped here); a `sync` runs, untimed, before
# each timed step, and times do not include flushing written data to disk.
#
# Targets for Outpost (part A: on each corpus):
#     first backup            ≥ 1.5 × restic's throughput (time ratio outpost/restic ≤ 0.67)
#     first-backup CPU        CPU s per GB, client + relay ≤ 0.70 × restic + rclone's, in the same run
#     restore                 faster than restic (ratio < 1.00) and within 1.3 × the floor (zstd -dc | tar -x)
#     8 machines at once      aggregate throughput ≥ 0.80 × the single push's
#     relay peak RSS          < 500 MiB with 8 machines pushing
#     dedup                   the data is stored once (dedup ratio ≥ 7.5 with 8 machines)
#     and: all clients exit 0, the store holds one recovery point per machine, restores are identical.

set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # ROOT, WORK, CORPORA, use_corpus, make_corpus, LOGS, helpers
OUTPOST=${OUTPOST_BIN:-$ROOT/.build-release/release/outpost}
CONCURRENT_MB=${CONCURRENT_MB:-1000}
MACHINES=${MACHINES:-8}
PARTS=${PARTS:-AB}                  # which parts to run: A, B or AB
ROUNDS=${ROUNDS:-3}                 # interleaved rounds of part A; medians are reported
BENCH_CLEAN=${BENCH_CLEAN:-0}
RUN=$WORK/relay-run                 # relays, repositories, restores, the part B subset, caches
RLOGS=$LOGS/relay                   # part A: $LOGS/relay/<corpus>
RESULTS=$WORK/relay-results.md
TCK=$(getconf CLK_TCK)              # clock ticks per second of /proc/PID/stat

export RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$RUN/cache/restic
export RCLONE_CONFIG=$RUN/rclone.conf   # none: rclone serves a local path and needs no remotes

declare -A PID      # background servers: name -> pid
declare -A SLOG     # background servers: name -> log
CLIENTS=()          # part B clients running in the background
declare -A A B      # results of part A (the current corpus) and part B
SECTIONS=           # part A's report, a section per corpus
USED_KINDS=()       # the corpora this run used (BENCH_CLEAN deletes them)

# Part A's CPUs: the first two this script may run on; the client gets the first, the server the second.
mapfile -t CPUS < <(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status | tr ',' '\n' |
    awk -F- 'NF { for (i = $1; i <= (NF == 2 ? $2 : $1); i++) print i }')
if ((${#CPUS[@]} >= 2)) && command -v taskset >/dev/null; then
    PIN_CLIENT=(taskset -c "${CPUS[0]}")
    PIN_SERVER=(taskset -c "${CPUS[1]}")
    PINNING="client on CPU ${CPUS[0]}, server on CPU ${CPUS[1]} (taskset), as on two machines"
    FLOOR_PIN="on the client's CPU"
else
    PIN_CLIENT=() PIN_SERVER=()
    PINNING="NOT pinned ($(nproc) CPU(s) or no taskset): client and server share the CPUs"
    FLOOR_PIN="not pinned"
fi

# ---------------------------------------------------------------------------------------------------------
# Packages and the binary

install_packages() {
    local missing=()
    command -v restic >/dev/null || missing+=(restic)
    command -v rclone >/dev/null || missing+=(rclone)
    [[ -x /usr/bin/time ]] || missing+=(time)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# ---------------------------------------------------------------------------------------------------------
# Background servers

# capture LOG CMD...: run CMD (stdin from /dev/null), stderr appended to LOG, stdout printed (and logged); on
# failure show the end of LOG and stop (use as `x=$(capture ...)`: the failed assignment stops the script).
capture() {
    local log=$1 out; shift
    printf '\n$ %s\n' "$*" >>"$log"
    if ! out=$("$@" </dev/null 2>>"$log"); then
        printf 'error: command failed: %s\n--- last lines of %s:\n' "$*" "$log" >&2
        tail -n 25 "$log" >&2
        exit 1
    fi
    printf '%s\n' "$out" >>"$log"
    printf '%s\n' "$out"
}

# alive PID: the process exists and is not a zombie (an exited child stays a zombie until `wait`)
alive() {
    local state
    state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# vmhwm PID: peak resident set size of a running process in MiB, "-" if it cannot be read
vmhwm() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) print "-" }' "/proc/$1/status" 2>/dev/null || echo -; }

# start_server NAME LOG CMD...: run CMD in the background, output appended to LOG
start_server() {
    local name=$1 log=$2; shift 2
    printf '\n$ %s &\n' "$*" >>"$log"
    "$@" </dev/null >>"$log" 2>&1 &
    PID[$name]=$!
    SLOG[$name]=$log
}

# server_ticks NAME: CPU time (user + system, all threads) the server has used so far, in clock ticks: fields 14
# and 15 of /proc/PID/stat, counted after the ")" that ends field 2 (the command name may hold spaces). taskset
# execs the server, so the pid is the server's own.
server_ticks() {
    local stat fields
    stat=$(<"/proc/${PID[$1]}/stat") || die "cannot read the CPU time of $1 (pid ${PID[$1]})"
    read -r -a fields <<<"${stat##*) }"   # fields[0] is field 3
    echo $((fields[11] + fields[12]))
}

# stop_server NAME: read its VmHWM into HWM (MiB), SIGTERM it and wait (SIGKILL after 30 s); STOP_RC = its status
stop_server() {
    local name=$1 pid=${PID[$1]:-} i
    HWM=- STOP_RC=0
    [[ -n $pid ]] || return 0
    HWM=$(vmhwm "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        say "$name did not stop within 30 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" || STOP_RC=$?
    unset "PID[$name]"
}

# server_died NAME LOG: stop with the end of the server's log
server_died() {
    printf 'error: %s exited early\n--- last lines of %s:\n' "$1" "$2" >&2
    tail -n 25 "$2" >&2
    exit 1
}

# relay_up NAME [PIN...]: a fresh relay in $RUN/NAME, served in the background on a free port (run through
# PIN, e.g. taskset -c 1, when given); sets FP and PORT.
relay_up() {
    local name=$1 dir=$RUN/$1 log=$RLOGS/$1.log i
    shift
    rm -rf -- "$dir" "$dir.port" "$dir.stats.json"
    FP=$(capture "$log" "$OUTPOST" relay init --data "$dir")
    [[ $FP =~ ^[[:xdigit:]:]+$ ]] || die "unexpected fingerprint from relay init: $FP"
    start_server "$name" "$log" "$@" "$OUTPOST" relay serve --data "$dir" --listen 127.0.0.1:0 --port-file "$dir.port"
    PORT=
    for ((i = 0; i < 600; i++)); do
        if [[ -s $dir.port ]]; then
            PORT=$(tr -d '[:space:]' <"$dir.port")
            [[ $PORT =~ ^[0-9]+$ ]] && break
            PORT=
        fi
        alive "${PID[$name]}" || server_died "$name" "$log"
        sleep 0.1
    done
    [[ -n $PORT ]] || die "$name wrote no port to $dir.port within 60 s (see $log)"
    say "$name listening on https://127.0.0.1:$PORT (pid ${PID[$name]})"
}

# enroll RELAY MACHINE CONFIG LOG: add the machine to the relay and enroll it (client configuration CONFIG)
enroll() {
    local token
    token=$(capture "$4" "$OUTPOST" relay add-machine --data "$RUN/$1" "$2")
    run "$4" "$OUTPOST" enroll --relay "https://127.0.0.1:$PORT" --token "$token" --fingerprint "$FP" --config "$3"
}

# store_stat RELAY FIELD: a number from `outpost store stats --json` of a (stopped) relay's store
store_stat() {
    local json=$RUN/$1.stats.json
    [[ -f $json ]] || capture "$RLOGS/$1.log" "$OUTPOST" store stats --store "$RUN/$1/store" --json >"$json"
    local v; v=$(tr -d '\n' <"$json" | sed -n "s/.*\"$2\" *: *\([0-9][0-9]*\).*/\1/p")
    echo "${v:--}"
}

# a free TCP port on 127.0.0.1 from 18080 up
free_port() {
    local p
    for ((p = 18080; p < 18999; p++)); do
        if [[ -z $(ss -Htln "sport = :$p") ]]; then echo "$p"; return; fi
    done
    die "no free port in 18080–18998"
}

# ---------------------------------------------------------------------------------------------------------
# Restores

# verify TOOL DIR: content with diff -r (symlinks compared as links), then metadata; sets A[tool:content|meta].
# A failure in one round stays in the report (later rounds do not overwrite it).
verify_restore() {
    local tool=$1 got; got=$(restored_root "$2")
    local out=$RLOGS/$tool.verify.$ROUND
    if [[ ${A[$tool:content]:-OK} == OK ]]; then
        if diff -r --no-dereference -q "$CORPUS" "$got" >"$out" 2>&1; then
            A[$tool:content]=OK
        else
            A[$tool:content]="FAILED in round $ROUND ($(wc -l <"$out") differences, see $out)"
        fi
    fi
    if [[ ${A[$tool:meta]:-OK} == OK ]]; then
        if diff <(meta_listing "$CORPUS") <(meta_listing "$got") >"$out.meta" 2>&1; then
            A[$tool:meta]=OK
        else
            A[$tool:meta]="differs in round $ROUND ($(grep -c '^<' "$out.meta" || true) entries, see $out.meta)"
        fi
    fi
}

# mbytes BYTES: megabytes with 1 decimal, "-" stays "-"
mbytes() { if [[ $1 == - ]]; then echo -; else awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; fi; }

rss_of() { awk 'END { printf "%.1f", $1 / 1024 }' "$1"; }   # last line of a GNU time %M file, KiB -> MiB
cpu_of() { awk 'END { printf "%.2f", $2 + $3 }' "$1"; }      # last line of a GNU time '%M %U %S' file: CPU s

# measured TOOL STEP SERVER LOG CMD...: run CMD on the client's CPU, timed, with GNU time; sets A[TOOL:STEP]
# (wall s), A[TOOL:STEP:rss] (client peak RSS MiB), A[TOOL:STEP:ccpu] (client CPU s, user + system),
# A[TOOL:STEP:scpu] (the server's CPU s over the step) and A[TOOL:STEP:cpu] (their sum).
measured() {
    local tool=$1 step=$2 server=$3 log=$4 s0 s1
    shift 4
    local tf=$RUN/a-$tool-$step.time
    sync
    s0=$(server_ticks "$server")
    timed "$log" /usr/bin/time -f '%M %U %S' -o "$tf" "${PIN_CLIENT[@]}" "$@"
    s1=$(server_ticks "$server")
    A[$tool:$step]=$ELAPSED
    A[$tool:$step:rss]=$(rss_of "$tf")
    A[$tool:$step:ccpu]=$(cpu_of "$tf")
    A[$tool:$step:scpu]=$(awk -v t=$((s1 - s0)) -v hz="$TCK" 'BEGIN { printf "%.2f", t / hz }')
    A[$tool:$step:cpu]=$(awk -v c="${A[$tool:$step:ccpu]}" -v s="${A[$tool:$step:scpu]}" 'BEGIN { printf "%.2f", c + s }')
}

# ---------------------------------------------------------------------------------------------------------
# A. One machine: Outpost → relay (HTTPS) vs restic → rclone serve restic (HTTP), server and client pinned

part_a_outpost() {
    local log=$RLOGS/a-outpost.log cfg=$RUN/a-client.toml dir=$RUN/a-restore-outpost
    relay_up a-relay "${PIN_SERVER[@]}"
    enroll a-relay bench "$cfg" "$log"

    warm_corpus
    measured outpost first a-relay "$log" "$OUTPOST" backup --config "$cfg" "$CORPUS"
    say "outpost: first backup ${A[outpost:first]} s, client peak RSS ${A[outpost:first:rss]} MiB," \
        "CPU s client ${A[outpost:first:ccpu]} + relay ${A[outpost:first:scpu]}"

    warm_corpus
    timed "$log" "${PIN_CLIENT[@]}" "$OUTPOST" backup --config "$cfg" "$CORPUS"
    A[outpost:nochange]=$ELAPSED
    say "outpost: no-change backup ${A[outpost:nochange]} s"

    fresh_target "$dir"
    measured outpost restore a-relay "$log" "$OUTPOST" restore --config "$cfg" latest --target "$dir"
    verify_restore outpost "$dir"
    say "outpost: restore ${A[outpost:restore]} s (client peak RSS ${A[outpost:restore:rss]} MiB, CPU s client" \
        "${A[outpost:restore:ccpu]} + relay ${A[outpost:restore:scpu]}), content ${A[outpost:content]}," \
        "metadata ${A[outpost:meta]}"
    drop_target "$dir"

    stop_server a-relay
    A[outpost:srss]=$HWM
    ((STOP_RC == 0)) || say "warning: the relay exited with status $STOP_RC after SIGTERM (see $RLOGS/a-relay.log)"
    A[outpost:repo]=$(du -sb "$RUN/a-relay/store" | awk '{ printf "%.1f", $1 / 1e6 }')
    A[outpost:packs]=$(store_stat a-relay packBytes)
    A[outpost:points]=$(store_stat a-relay recoveryPoints)
    say "outpost: relay peak RSS ${A[outpost:srss]} MiB; repository ${A[outpost:repo]} MB" \
        "(packs $(mbytes "${A[outpost:packs]}") MB, ${A[outpost:points]} recovery points)"
    rm -rf -- "$RUN/a-relay"
}

part_a_restic() {
    local log=$RLOGS/a-restic.log slog=$RLOGS/a-rclone.log repo=$RUN/a-restic-repo dir=$RUN/a-restore-restic i
    local port; port=$(free_port)
    local url=rest:http://127.0.0.1:$port/
    rm -rf -- "$repo" "$RESTIC_CACHE_DIR"; mkdir -p "$repo"
    start_server rclone "$slog" "${PIN_SERVER[@]}" rclone serve restic --addr "127.0.0.1:$port" "$repo"
    for ((i = 0; i < 600; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        alive "${PID[rclone]}" || server_died rclone "$slog"
        sleep 0.1
    done
    ((i < 600)) || die "rclone serve restic did not answer on port $port within 60 s (see $slog)"
    say "rclone serve restic listening on http://127.0.0.1:$port (pid ${PID[rclone]})"
    run "$log" restic -r "$url" init

    warm_corpus
    measured restic first rclone "$log" restic -r "$url" backup -q "$CORPUS"
    say "restic: first backup ${A[restic:first]} s, client peak RSS ${A[restic:first:rss]} MiB," \
        "CPU s client ${A[restic:first:ccpu]} + rclone ${A[restic:first:scpu]}"

    warm_corpus
    timed "$log" "${PIN_CLIENT[@]}" restic -r "$url" backup -q "$CORPUS"
    A[restic:nochange]=$ELAPSED
    say "restic: no-change backup ${A[restic:nochange]} s"

    fresh_target "$dir"
    measured restic restore rclone "$log" restic -r "$url" restore latest --target "$dir"
    verify_restore restic "$dir"
    say "restic: restore ${A[restic:restore]} s (client peak RSS ${A[restic:restore:rss]} MiB, CPU s client" \
        "${A[restic:restore:ccpu]} + rclone ${A[restic:restore:scpu]}), content ${A[restic:content]}," \
        "metadata ${A[restic:meta]}"
    drop_target "$dir"

    stop_server rclone
    A[restic:srss]=$HWM
    A[restic:repo]=$(du -sb "$repo" | awk '{ printf "%.1f", $1 / 1e6 }')
    say "restic: rclone peak RSS ${A[restic:srss]} MiB; repository ${A[restic:repo]} MB"
    rm -rf -- "$repo" "$RESTIC_CACHE_DIR"
}

# The floors, each round, on the client's CPU (FLOOR_CP, FLOOR_LOCAL with FLOOR_LOCAL_CPU, RESTORE_FLOOR).

# floor_cp: `cp -a` of the corpus into a fresh target (in the kernel: copy_file_range, nothing decompressed)
floor_cp() {
    local dir=$RUN/floor-cp
    fresh_target "$dir"
    warm_corpus
    timed "$RLOGS/floors.log" "${PIN_CLIENT[@]}" cp -a -- "$CORPUS" "$dir/corpus"
    FLOOR_CP=$ELAPSED
    drop_target "$dir"
    say "floor: cp -a $FLOOR_CP s"
}

# floor_local: the same first backup into a local store (same zstd level as the relay's default push level, 2):
# what the client's own work costs on this machine without the network and the relay's re-verification.
floor_local() {
    local store=$RUN/local-store tf=$RUN/floor-local.time
    rm -rf -- "$store"
    run "$RLOGS/floors.log" "$OUTPOST" store init --store "$store" --compression-level 2
    warm_corpus
    timed "$RLOGS/floors.log" /usr/bin/time -f '%M %U %S' -o "$tf" \
        "${PIN_CLIENT[@]}" "$OUTPOST" backup --store "$store" --machine bench "$CORPUS"
    FLOOR_LOCAL=$ELAPSED
    FLOOR_LOCAL_CPU=$(cpu_of "$tf")
    rm -rf -- "$store"
    say "floor: outpost backup to a local store $FLOOR_LOCAL s ($FLOOR_LOCAL_CPU CPU s)"
}

# floor_restore: restore_floor (lib.sh) in a subshell pinned to the client's CPU, zstd and tar together
floor_restore() {
    (
        if ((${#PIN_CLIENT[@]})); then taskset -pc "${CPUS[0]}" "$BASHPID" >/dev/null; fi
        restore_floor "$RUN/floor-restore"
        echo "$RESTORE_FLOOR" >"$RUN/floor-restore.s"
    )
    RESTORE_FLOOR=$(<"$RUN/floor-restore.s")
    say "floor: zstd -dc | tar -x $RESTORE_FLOOR s"
}

# median "V1 V2 …": the median of the values
median() {
    tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# the per-round values of part A whose medians are reported
A_METRICS=(first nochange restore first:ccpu first:scpu first:cpu restore:ccpu restore:scpu restore:cpu)

# part_a: ROUNDS interleaved rounds (floors, outpost, restic, floors, outpost, restic, …) on the selected corpus,
# then its section of the report. This machine's speed drifts by 10–20 % from minute to minute, so each value
# reported is the median of its rounds, and the ratios compare medians.
part_a() {
    A=()
    RLOGS=$LOGS/relay/$CORPUS_KIND
    mkdir -p "$RLOGS"
    revert_change                   # an interrupted compare.sh may have left its 1 % change behind
    make_corpus
    USED_KINDS+=("$CORPUS_KIND")
    CORPUS_BYTES=$(tree_bytes "$CORPUS")
    CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
    CORPUS_SMALL_SHARE=$(find "$CORPUS" -type f -printf '%s\n' |
        awk '{ n++; if ($1 < 16384) k++ } END { printf "%.0f", n ? 100 * k / n : 0 }')
    say "part A, $CORPUS_KIND corpus: $((CORPUS_BYTES / 1000000)) MB in $CORPUS_FILES files; warming the page cache"
    warm_corpus

    local -A rounds=()
    local t m
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        say "part A, $CORPUS_KIND corpus: round $ROUND of $ROUNDS"
        floor_restore
        floor_cp
        floor_local
        rounds[floor]+="$RESTORE_FLOOR " rounds[cp]+="$FLOOR_CP "
        rounds[local]+="$FLOOR_LOCAL " rounds[local:cpu]+="$FLOOR_LOCAL_CPU "
        part_a_outpost
        part_a_restic
        for t in outpost restic; do
            for m in "${A_METRICS[@]}"; do rounds[$t:$m]+="${A[$t:$m]} "; done
        done
    done
    for t in outpost restic; do
        for m in "${A_METRICS[@]}"; do
            A[$t:$m:all]=${rounds[$t:$m]% }
            A[$t:$m]=$(median "${rounds[$t:$m]}")
        done
    done
    for m in floor cp local local:cpu; do
        A[$m:all]=${rounds[$m]% }
        A[$m]=$(median "${rounds[$m]}")
    done
    SECTIONS+="$(section_a)"$'\n\n'
}

# ---------------------------------------------------------------------------------------------------------
# B. Concurrency

# SUBSET: the corpus's first files (path order) up to CONCURRENT_MB MB, or the corpus itself when smaller
make_subset() {
    local budget=$((CONCURRENT_MB * 1000000))
    if ((CORPUS_BYTES <= budget)); then
        SUBSET=$CORPUS
    else
        SUBSET=$RUN/subset
        say "part B: copying the corpus's first $CONCURRENT_MB MB to $SUBSET"
        rm -rf -- "$SUBSET"; mkdir -p "$SUBSET"
        (cd "$CORPUS" && find . \( -type f -o -type l \) -printf '%s\t%P\n' | sort -t $'\t' -k 2 |
            awk -F '\t' -v b="$budget" '$1 + s <= b { s += $1; print $2 }' |
            xargs -d '\n' -r cp -a --parents -t "$SUBSET")
    fi
    SUBSET_BYTES=$(tree_bytes "$SUBSET")
    SUBSET_FILES=$(find "$SUBSET" -type f | wc -l)
    say "part B: $((SUBSET_BYTES / 1000000)) MB in $SUBSET_FILES files per machine ($SUBSET)"
}

part_b_single() {
    local log=$RLOGS/b-single.log cfg=$RUN/b-single.toml
    relay_up b-single-relay
    enroll b-single-relay solo "$cfg" "$log"
    timed "$log" /usr/bin/time -f %M -o "$RUN/b-single.rss" "$OUTPOST" backup --config "$cfg" "$SUBSET"
    B[single]=$ELAPSED
    B[single_crss]=$(rss_of "$RUN/b-single.rss")
    stop_server b-single-relay
    B[single_srss]=$HWM
    ((STOP_RC == 0)) || say "warning: the relay exited with status $STOP_RC after SIGTERM (see $RLOGS/b-single-relay.log)"
    B[single_raw]=$(store_stat b-single-relay rawBytes)
    say "part B: single push ${B[single]} s, relay peak RSS ${B[single_srss]} MiB"
    rm -rf -- "$RUN/b-single-relay"
}

part_b_concurrent() {
    local log=$RLOGS/b-concurrent.log i pid rc
    relay_up b-relay
    for ((i = 1; i <= MACHINES; i++)); do enroll b-relay "m$i" "$RUN/b-m$i.toml" "$log"; done
    say "part B: $MACHINES machines enrolled; pushing at once"

    sync
    local t0; t0=$(date +%s.%N)
    CLIENTS=()
    for ((i = 1; i <= MACHINES; i++)); do
        /usr/bin/time -f '%e %M' -o "$RUN/b-m$i.time" "$OUTPOST" backup --config "$RUN/b-m$i.toml" "$SUBSET" \
            </dev/null >"$RLOGS/b-m$i.log" 2>&1 &
        CLIENTS+=($!)
    done
    B[ok]=0
    local failed=()
    for ((i = 1; i <= MACHINES; i++)); do
        pid=${CLIENTS[i - 1]}; rc=0
        wait "$pid" || rc=$?
        if ((rc == 0)); then B[ok]=$((B[ok] + 1)); else failed+=("m$i (exit $rc, see $RLOGS/b-m$i.log)"); fi
    done
    B[wall]=$(since "$t0")
    CLIENTS=()
    B[failed]=${failed[*]:-}
    ((${#failed[@]} == 0)) || say "warning: clients failed: ${failed[*]}"

    # per-client times and peak RSS: the last line of each GNU time file is "SECONDS KIB"
    read -r B[tmin] B[tmed] B[tmax] B[crss] < <(
        for ((i = 1; i <= MACHINES; i++)); do tail -n 1 "$RUN/b-m$i.time"; done |
            sort -n | awk '{ t[NR] = $1; if ($2 > m) m = $2 }
                END { printf "%s %s %s %.1f\n", t[1], (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2), t[NR], m / 1024 }')

    stop_server b-relay
    B[srss]=$HWM
    ((STOP_RC == 0)) || say "warning: the relay exited with status $STOP_RC after SIGTERM (see $RLOGS/b-relay.log)"
    B[raw]=$(store_stat b-relay rawBytes)
    B[packs]=$(store_stat b-relay packBytes)
    B[points]=$(store_stat b-relay recoveryPoints)
    say "part B: $MACHINES machines at once ${B[wall]} s (clients ${B[tmin]}–${B[tmax]} s), ${B[ok]}/$MACHINES exit 0," \
        "${B[points]} recovery points, relay peak RSS ${B[srss]} MiB"
    rm -rf -- "$RUN/b-relay"
}

# ---------------------------------------------------------------------------------------------------------
# C. Report

# mbps BYTES SECONDS: MB/s with 1 decimal
mbps() { if [[ $2 == - ]]; then echo -; else awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; fi; }

# per_gb SECONDS: seconds per GB of the current corpus (CORPUS_BYTES / 1e9), 2 decimals
per_gb() { if [[ $1 == - ]]; then echo -; else awk -v s="$1" -v b="$CORPUS_BYTES" 'BEGIN { printf "%.2f", s / (b / 1e9) }'; fi; }

# target DESCRIPTION VALUE CONDITION(awk, on x): a line "- DESCRIPTION: met|MISSED (VALUE)"
target() {
    local x=$2
    if [[ $x == - ]]; then printf -- '- %s: -\n' "$1"
    else printf -- '- %s: %s\n' "$1" "$(awk -v x="$x" "BEGIN { print ($3) ? \"met\" : \"MISSED\" }") ($x)"; fi
}

# section_a: part A's section of the report for the current corpus (printed)
section_a() {
    local t m
    for t in outpost restic; do
        for m in "${A_METRICS[@]}" first:rss restore:rss repo srss content meta packs points; do : "${A[$t:$m]:=-}"; done
    done
    local mb; mb=$(awk -v b="$CORPUS_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
    local what
    case $CORPUS_KIND in
        large) what="large files: toolchain $CORPUS_MB MB max + 50 MB random + 300 text files" ;;
        small) what="small files: /usr/include, /usr/lib/python3*, /usr/bin, $SMALL_MB MB max" ;;
    esac

    row() { # LABEL OUTPOST RESTIC DIGITS
        printf '| %s | %s | %s | %s |\n' "$1" "$(f "$4" "$2")" "$(f "$4" "$3")" "$(ratio "$2" "$3")"
    }
    arow() { row "$1" "${A[outpost:$2]}" "${A[restic:$2]}" "$3"; }   # LABEL METRIC DIGITS
    grow() { row "$1" "$(per_gb "${A[outpost:$2]}")" "$(per_gb "${A[restic:$2]}")" 2; }   # LABEL METRIC

    echo "## A. One machine over loopback: the $CORPUS_KIND-file corpus"
    echo
    echo "Corpus: $mb MB in $CORPUS_FILES files, $CORPUS_SMALL_SHARE % of them under 16 KiB ($what; $CORPUS)." \
         "Client and server: $PINNING. Restores, the restore floor and \`cp -a\` write to $TARGET_FS."
    echo
    echo '| | outpost → relay | restic → rclone | outpost/restic |'
    echo '|---|---:|---:|---:|'
    arow 'first backup s' first 2
    arow 'no-change backup s' nochange 2
    arow 'full restore s' restore 2
    grow 'first backup CPU s/GB: client' first:ccpu
    grow 'first backup CPU s/GB: server' first:scpu
    grow 'first backup CPU s/GB: client + server' first:cpu
    grow 'restore CPU s/GB: client' restore:ccpu
    grow 'restore CPU s/GB: server' restore:scpu
    grow 'restore CPU s/GB: client + server' restore:cpu
    arow 'repository MB' repo 1
    arow 'client peak RSS MiB (first backup)' first:rss 1
    arow 'client peak RSS MiB (restore)' restore:rss 1
    arow 'server peak RSS MiB (VmHWM, whole run)' srss 1
    echo
    echo "First-backup throughput: outpost $(mbps "$CORPUS_BYTES" "${A[outpost:first]}") MB/s, restic" \
         "$(mbps "$CORPUS_BYTES" "${A[restic:first]}") MB/s. Restore throughput: outpost" \
         "$(mbps "$CORPUS_BYTES" "${A[outpost:restore]}") MB/s, restic $(mbps "$CORPUS_BYTES" "${A[restic:restore]}") MB/s."
    echo "Floors, $FLOOR_PIN: restore floor \`zstd -dc corpus.tar.zst | tar -x\` $(f 2 "${A[floor]}") s" \
         "(outpost's restore $(ratio "${A[outpost:restore]}" "${A[floor]}") ×, restic's" \
         "$(ratio "${A[restic:restore]}" "${A[floor]}") ×); \`cp -a\` $(f 2 "${A[cp]}") s (outpost's restore" \
         "$(ratio "${A[outpost:restore]}" "${A[cp]}") ×); Outpost's first backup into a local store (level 2, no" \
         "network, no relay) $(f 2 "${A[local]}") s and $(per_gb "${A[local:cpu]}") CPU s/GB," \
         "$(ratio "${A[local]}" "${A[restic:first]}") × restic's time to the relay."
    echo "Outpost's store: $(mbytes "${A[outpost:packs]}") MB in packs, ${A[outpost:points]} recovery points."
    echo
    echo "Times and CPU seconds are medians of $ROUNDS interleaved rounds; each round's values (s):"
    for t in outpost restic; do
        echo "- $t: first backup ${A[$t:first:all]}; no-change ${A[$t:nochange:all]}; restore ${A[$t:restore:all]};" \
             "CPU (client + server) first backup ${A[$t:first:cpu:all]}, restore ${A[$t:restore:cpu:all]}"
    done
    echo "- floors: zstd -dc | tar -x ${A[floor:all]}; cp -a ${A[cp:all]}; outpost backup to a local store ${A[local:all]}"
    echo
    echo "Restore check (diff -r --no-dereference; metadata = types, modes, sizes, file mtimes, link targets):"
    for t in outpost restic; do echo "- $t: content ${A[$t:content]}, metadata ${A[$t:meta]}"; done
    echo
    echo "Targets on the $CORPUS_KIND-file corpus:"
    echo
    target 'first backup ≥ 1.5 × restic throughput (outpost/restic time ≤ 0.67)' \
        "$(ratio "${A[outpost:first]}" "${A[restic:first]}")" 'x <= 0.67'
    target 'first-backup CPU s/GB, client + relay ≤ 0.70 × restic + rclone' \
        "$(ratio "${A[outpost:first:cpu]}" "${A[restic:first:cpu]}")" 'x <= 0.70'
    target 'restore faster than restic (outpost/restic < 1.00)' \
        "$(ratio "${A[outpost:restore]}" "${A[restic:restore]}")" 'x < 1.00'
    target 'restore within 1.3 × the floor zstd -dc | tar -x (outpost/floor ≤ 1.30)' \
        "$(ratio "${A[outpost:restore]}" "${A[floor]}")" 'x <= 1.30'
    local ok=MISSED
    [[ ${A[outpost:content]} == OK && ${A[outpost:meta]} == OK ]] && ok=met
    echo "- the restore is identical to the corpus in every round (content and metadata): $ok"
}

# section_b: part B's section of the report (printed)
section_b() {
    local m
    for m in crss failed ok packs points raw single single_crss single_raw single_srss srss tmax tmed tmin wall; do : "${B[$m]:=-}"; done
    local smb; smb=$(awk -v b="$SUBSET_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
    local single_tp agg_tp agg_ratio dedup
    single_tp=$(mbps "$SUBSET_BYTES" "${B[single]}")
    agg_tp=$(mbps "$((MACHINES * SUBSET_BYTES))" "${B[wall]}")
    agg_ratio=$(ratio "$(awk -v n="$MACHINES" -v s="${B[single]}" 'BEGIN { print (s == "-") ? "-" : n * s }')" "${B[wall]}")
    dedup=$(ratio "$((MACHINES * SUBSET_BYTES))" "${B[raw]}")
    local cross=-
    [[ ${B[single_raw]} == - ]] || cross=$(ratio "$((MACHINES * B[single_raw]))" "${B[raw]}")

    echo "## B. $MACHINES machines pushing the same $smb MB ($SUBSET_FILES files of the large-file corpus) at once"
    echo
    echo '| | value |'
    echo '|---|---:|'
    echo "| single push (1 machine, fresh relay) s | $(f 2 "${B[single]}") |"
    echo "| single-push throughput MB/s | $single_tp |"
    echo "| $MACHINES machines at once: wall s (until all finished) | $(f 2 "${B[wall]}") |"
    echo "| per-machine time s (min / median / max) | $(f 2 "${B[tmin]}") / $(f 2 "${B[tmed]}") / $(f 2 "${B[tmax]}") |"
    echo "| aggregate throughput MB/s ($MACHINES × bytes / wall) | $agg_tp |"
    echo "| aggregate / single | $agg_ratio |"
    echo "| clients that exited 0 | ${B[ok]} / $MACHINES |"
    echo "| recovery points in the store | ${B[points]} |"
    echo "| stored raw MB (rawBytes) / packs MB (packBytes) | $(mbytes "${B[raw]}") / $(mbytes "${B[packs]}") |"
    echo "| dedup ratio ($MACHINES × bytes / rawBytes) | $dedup |"
    echo "| cross-machine dedup ($MACHINES × rawBytes of the single push / rawBytes) | $cross |"
    echo "| relay peak RSS MiB ($MACHINES machines) | $(f 1 "${B[srss]}") |"
    echo "| relay peak RSS MiB (single push) | $(f 1 "${B[single_srss]}") |"
    echo "| client peak RSS MiB (max of $MACHINES / single) | $(f 1 "${B[crss]}") / $(f 1 "${B[single_crss]}") |"
    echo
    echo "The $MACHINES clients and the relay share $(nproc) cores: the ratio compares bytes per second, not per-machine speed." \
         "The dedup ratio also counts duplicate chunks inside one machine's data (so it can exceed $MACHINES);" \
         "the cross-machine figure compares with the single push's store and is $MACHINES when every machine's" \
         "data is stored exactly once."
    [[ ${B[failed]} == - ]] || echo "Failed clients: ${B[failed]}."
    echo
    echo "Targets of part B:"
    echo
    target "$MACHINES-machine aggregate ≥ 0.8 × single (aggregate/single ≥ 0.80)" "$agg_ratio" 'x >= 0.80'
    target 'relay peak RSS < 500 MiB' "${B[srss]}" 'x < 500'
    target "dedup stores the data once (dedup ratio ≥ $(awk -v n="$MACHINES" 'BEGIN { printf "%.1f", n - 0.5 }'))" \
        "$dedup" "x >= $MACHINES - 0.5"
    local ok=MISSED
    [[ ${B[ok]} == "$MACHINES" && ${B[points]} == "$MACHINES" ]] && ok=met
    echo "- all $MACHINES clients exit 0 and the store holds $MACHINES recovery points: $ok" \
         "(${B[ok]} exited 0, ${B[points]} recovery points)"
}

report() {
    {
        echo "# Outpost relay vs restic + rclone serve restic — $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "$(nproc) cores, loopback. Part A: $PINNING; part B: nothing pinned. The corpora are page-cached" \
             "(caches cannot be dropped here); times are wall seconds without the final flush to disk; CPU seconds" \
             "are user + system (client: GNU time; server: /proc/PID/stat over the step), per GB = per 1e9 bytes" \
             "of corpus. Outpost speaks HTTPS (pinned self-signed certificate); rclone serves restic's REST" \
             "protocol over plain HTTP. Load average (1 min) before the run $LOAD_START, at the end" \
             "$(cut -d ' ' -f 1 /proc/loadavg) (anything else running skews the numbers)."
        echo "Versions: outpost $("$OUTPOST" --version 2>/dev/null || echo '?') ($OUTPOST), restic" \
             "$(restic version | awk '{ print $2 }'), $(rclone version 2>/dev/null | head -n 1)."
        echo
        if [[ -n $SECTIONS ]]; then printf '%s' "$SECTIONS"; else printf 'Part A was not run (PARTS=%s).\n\n' "$PARTS"; fi
        if [[ $PARTS == *B* ]]; then section_b; else echo "Part B was not run (PARTS=$PARTS)."; fi
    } | tee "$RESULTS"
}

# ---------------------------------------------------------------------------------------------------------
# D. Cleanup (also on failure or Ctrl-C): stop background servers and clients, unmount restore targets, drop
# relays, repositories, restores, the subset and caches.

cleanup() {
    local name pid
    for pid in "${CLIENTS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for name in "${!PID[@]}"; do
        pid=${PID[$name]}
        if ! alive "$pid"; then
            say "$name (pid $pid) had already exited before the script stopped it; last lines of ${SLOG[$name]}:"
            tail -n 5 "${SLOG[$name]}" >&2
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true
        say "stopped $name (pid $pid)"
    done
    local i
    for pid in "${CLIENTS[@]}" "${PID[@]}"; do
        for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    local m
    for m in $(findmnt -rn -o TARGET | grep "^$RUN/" || true); do umount "$m" || true; done
    rm -rf -- "$RUN" "$WORK/target.img"
    if [[ $BENCH_CLEAN == 1 ]]; then
        local kind
        for kind in "${USED_KINDS[@]}"; do
            use_corpus "$kind"
            rm -rf -- "$CORPUS" "$MARKER" "$CORPUS.tar.zst"
        done
    fi
}

# ---------------------------------------------------------------------------------------------------------
# Main

install_packages
[[ -x $OUTPOST ]] || die "no Outpost binary at $OUTPOST (build one: swift build -c release --build-path .build-release --product outpost; or set OUTPOST_BIN)"
"$OUTPOST" relay --help >/dev/null 2>&1 || die "$OUTPOST has no \`relay\` command (an old build?)"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf -- "$RUN" "$LOGS/relay"
mkdir -p "$RUN" "$LOGS/relay"
LOAD_START=$(cut -d ' ' -f 1 /proc/loadavg)
say "part A: $PINNING"

if [[ $PARTS == *A* ]]; then
    for kind in $CORPORA; do
        use_corpus "$kind"
        part_a
    done
fi
if [[ $PARTS == *B* ]]; then
    RLOGS=$LOGS/relay
    use_corpus large
    revert_change
    make_corpus
    USED_KINDS+=(large)
    CORPUS_BYTES=$(tree_bytes "$CORPUS")
    make_subset
    part_b_single
    part_b_concurrent
fi

echo
report
