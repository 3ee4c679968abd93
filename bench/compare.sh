#!/usr/bin/env bash
# bench/compare.sh: benchmark Outpost against restic and borg on one machine.
#
# This is a benchmark, not a test. Run it from anywhere, as root (it installs packages with apt-get):
#
#     bench/compare.sh                              # build Outpost (release), run everything
#     OUTPOST_BIN=/path/to/outpost bench/compare.sh # use this binary, don't build
#     CORPUS_MB=50 SKIP_OUTPOST=1 bench/compare.sh  # quick check of the script with the peers only
#
# Environment:
#     OUTPOST_BIN   use this Outpost binary instead of `swift build -c release --product outpost`
#     SKIP_OUTPOST  1 = benchmark restic and borg only (no build; the outpost columns show "-")
#     CORPORA       the corpora to run, in order (default "large small"); each gets its own section of the report
#     CORPUS_MB     the large corpus: how many MB (10^6 bytes) of the Swift toolchain's files to copy (default
#                   2000, i.e. all of /opt/swift/usr/lib, 1.98 GB); ~50 MB of random data and 300 small text
#                   files are added
#     SMALL_MB      the small-file corpus: MB of system files (default 430: /usr/include, /usr/lib/python3*,
#                   /usr/bin; here 13,475 files, 74 % under 16 KiB)
#     BENCH_WORK    work directory (default bench/work, which is in .gitignore); the corpus is kept there and
#                   reused by later runs; the results go to $BENCH_WORK/results.md, the tools' logs to
#                   $BENCH_WORK/logs/
#     BENCH_CLEAN   1 = also delete the corpus at the end
#
# For each corpus and each tool, with a fresh repository: first backup, no-change backup, backup after 1 % of the
# files changed (every 100th regular file in sorted order gets 4 KiB appended; done once, after every tool's
# first two backups, so all tools back up the same three states; undone at the end so the corpus can be reused),
# full restore of the latest snapshot into a fresh target (a new loop-mounted ext4 when possible, see
# fresh_target in lib.sh; checked against the corpus with diff -r), repository size (du -sb) and the peak RSS of
# the first backup (GNU time %M). Floors: `cp -a` of the corpus, `tar | zstd -3 -T1`, and the restore floor
# `zstd -dc corpus.tar.zst | tar -x` (into a fresh target). The page cache cannot be dropped here: the corpus is
# read from the page cache, and the times do not include flushing written data to disk (a `sync` runs before each
# timed step, untimed).
#
# Targets for Outpost, on both corpora:
#     first backup         ≥ 1.5 × restic's throughput (time ratio outpost/restic ≤ 0.67)
#     no-change backup     no slower than restic (ratio ≤ 1.00)
#     restore              faster than restic (ratio < 1.00) and within 1.3 × of the restore floor
#     repository size      ≤ borg's + 5 % (ratio outpost/borg ≤ 1.05)
#     peak RSS             ≤ 300 MiB
#
# The corpus, its marker file and the small helpers live in bench/lib.sh (shared with bench/relay.sh).
#
# The latest results, with their date and machine, and how to read them: docs/benchmarks.md.

set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # ROOT, WORK, CORPUS_MB, CORPUS, MARKER, REVERT, LOGS, helpers
SKIP_OUTPOST=${SKIP_OUTPOST:-0}
BENCH_CLEAN=${BENCH_CLEAN:-0}
RUN=$WORK/run                       # repositories and restore directories of this run
RESULTS=$WORK/results.md

if [[ $SKIP_OUTPOST == 1 ]]; then TOOLS=(restic borg); else TOOLS=(outpost restic borg); fi

export RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$WORK/cache/restic
export BORG_PASSPHRASE=bench
export BORG_BASE_DIR=$WORK/cache/borg
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
# ---------------------------------------------------------------------------------------------------------
# 1. Packages

install_packages() {
    local missing=()
    command -v restic >/dev/null || missing+=(restic)
    command -v borg >/dev/null || missing+=(borgbackup)
    command -v zstd >/dev/null || missing+=(zstd)
    [[ -x /usr/bin/time ]] || missing+=(time)
    dpkg -s libzstd-dev >/dev/null 2>&1 || missing+=(libzstd-dev)
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

# ---------------------------------------------------------------------------------------------------------
# 2. Outpost binary

OUTPOST=
build_outpost() {
    [[ $SKIP_OUTPOST == 1 ]] && return
    if [[ -n ${OUTPOST_BIN:-} ]]; then
        [[ -x $OUTPOST_BIN ]] || die "OUTPOST_BIN=$OUTPOST_BIN is not an executable (set SKIP_OUTPOST=1 to leave Outpost out)"
        OUTPOST=$OUTPOST_BIN
        return
    fi
    say "building Outpost (swift build -c release --product outpost; a cold build takes ~12 min)"
    (cd "$ROOT" && swift build -c release --product outpost)
    OUTPOST=$(cd "$ROOT" && swift build -c release --show-bin-path)/outpost
    [[ -x $OUTPOST ]] || die "no binary at $OUTPOST after the build"
}

# ---------------------------------------------------------------------------------------------------------
# 3. Corpus (make_corpus and revert_change are in lib.sh)

# The 1 % change: every 100th regular file in sorted order gets 4 KiB of random data appended.
apply_change() {
    : >"$REVERT"
    local n=0 path
    while IFS= read -r path; do
        printf '%s\t%s\t%s\n' "$(stat -c %s -- "$path")" "$(find "$path" -maxdepth 0 -printf '%T@')" "$path" >>"$REVERT"
        head -c 4096 /dev/urandom >>"$path"
        n=$((n + 1))
    done < <(find "$CORPUS" -type f | sort | awk 'NR % 100 == 0')
    CHANGED_FILES=$n
}

# ---------------------------------------------------------------------------------------------------------
# 5. The tools. cmd_* set the array CMD (real executables, so GNU time can measure them).

cmd_init() {
    case $1 in
        outpost) CMD=("$OUTPOST" store init --store "$2") ;;
        restic)  CMD=(restic init --repo "$2") ;;
        borg)    CMD=(borg init --encryption=repokey "$2") ;;
    esac
}
cmd_backup() { # TOOL REPO N (N = 1, 2, 3: the borg archive name)
    case $1 in
        outpost) CMD=("$OUTPOST" backup --store "$2" --machine bench "$CORPUS") ;;
        restic)  CMD=(restic backup --repo "$2" -q "$CORPUS") ;;
        borg)    CMD=(borg create --compression zstd,3 "$2::a$3" "$CORPUS") ;;
    esac
}
cmd_restore() { # TOOL REPO DIR N
    case $1 in
        outpost) CMD=("$OUTPOST" restore --store "$2" --machine bench latest --target "$3") ;;
        restic)  CMD=(restic restore latest --repo "$2" --target "$3") ;;
        borg)    CMD=(in_dir "$3" borg extract "$2::a$4") ;;
    esac
}

# verify TOOL DIR: content with diff -r (symlinks compared as links), then metadata; sets V[tool:verify]
verify_restore() {
    local tool=$1 got; got=$(restored_root "$2")
    local out=$LOGS/$tool.verify
    if diff -r --no-dereference -q "$CORPUS" "$got" >"$out" 2>&1; then
        V[$tool:content]=OK
    else
        V[$tool:content]="FAILED ($(wc -l <"$out") differences, see $out)"
    fi
    if diff <(meta_listing "$CORPUS") <(meta_listing "$got") >"$out.meta" 2>&1; then
        V[$tool:meta]=OK
    else
        V[$tool:meta]="differs ($(grep -c '^<' "$out.meta" || true) entries, see $out.meta)"
    fi
}

declare -A V   # results: V[tool:metric]

phase_one() { # TOOL: fresh repository, first backup (with peak RSS), no-change backup
    local tool=$1 repo=$RUN/repo-$1 log=$LOGS/$1.log
    rm -rf -- "$repo"
    : >"$log"
    cmd_init "$tool" "$repo"; run "$log" "${CMD[@]}"

    cmd_backup "$tool" "$repo" 1
    timed "$log" /usr/bin/time -f %M -o "$LOGS/$tool.rss" "${CMD[@]}"
    V[$tool:first]=$ELAPSED
    V[$tool:rss]=$(awk '{ printf "%.1f", $1 / 1024 }' "$LOGS/$tool.rss")   # KiB -> MiB
    say "$tool: first backup ${V[$tool:first]} s, peak RSS ${V[$tool:rss]} MiB"

    cmd_backup "$tool" "$repo" 2
    timed "$log" "${CMD[@]}"
    V[$tool:nochange]=$ELAPSED
    say "$tool: no-change backup ${V[$tool:nochange]} s"
}

phase_two() { # TOOL: backup after the 1 % change, restore, verify, repository size
    local tool=$1 repo=$RUN/repo-$1 log=$LOGS/$1.log dir=$RUN/restore-$1
    cmd_backup "$tool" "$repo" 3
    timed "$log" "${CMD[@]}"
    V[$tool:change]=$ELAPSED
    say "$tool: 1 % change backup ${V[$tool:change]} s"

    fresh_target "$dir"
    cmd_restore "$tool" "$repo" "$dir" 3
    timed "$log" "${CMD[@]}"
    V[$tool:restore]=$ELAPSED
    verify_restore "$tool" "$dir"
    say "$tool: restore ${V[$tool:restore]} s, content ${V[$tool:content]}, metadata ${V[$tool:meta]}"
    drop_target "$dir"

    V[$tool:repo]=$(du -sb "$repo" | awk '{ printf "%.1f", $1 / 1e6 }')
    say "$tool: repository ${V[$tool:repo]} MB"
}

# ---------------------------------------------------------------------------------------------------------
# 6. Report

report() {
    local t m
    for t in outpost restic borg; do
        for m in first nochange change restore repo rss; do : "${V[$t:$m]:=-}"; done
        : "${V[$t:content]:=-}" "${V[$t:meta]:=-}"
    done
    local mb; mb=$(awk -v b="$CORPUS_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')

    row() { # LABEL METRIC DIGITS
        printf '| %s | %s | %s | %s | %s | %s |\n' "$1" \
            "$(f "$3" "${V[outpost:$2]}")" "$(f "$3" "${V[restic:$2]}")" "$(f "$3" "${V[borg:$2]}")" \
            "$(ratio "${V[outpost:$2]}" "${V[restic:$2]}")" "$(ratio "${V[outpost:$2]}" "${V[borg:$2]}")"
    }
    thr() { [[ $1 == - ]] && echo - || awk -v b="$CORPUS_BYTES" -v s="$1" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
    target() { # DESCRIPTION CONDITION(awk, on x)
        local x=$2
        if [[ $x == - ]]; then printf -- '- %s: -\n' "$1"
        else printf -- '- %s: %s\n' "$1" "$(awk -v x="$x" "BEGIN { print ($3) ? \"met\" : \"MISSED\" }") ($x)"; fi
    }

    local what
    if [[ $CORPUS_KIND == small ]]; then what="system files, $SMALL_MB MB max; $CORPUS_SMALL_SHARE % under 16 KiB"
    else what="toolchain $CORPUS_MB MB max + 50 MB random + 300 text files"; fi
    {
        echo "## Corpus $CORPUS_KIND — $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "Corpus: $mb MB in $CORPUS_FILES files ($CORPUS; $what); 1 % change: $CHANGED_FILES files + 4 KiB" \
             "each. $(nproc) cores. The corpus is page-cached (caches cannot be dropped here); times are wall" \
             "seconds without the final flush to disk. Restores go to $TARGET_FS."
        echo "Versions: restic $(restic version | awk '{ print $2 }'), $(borg --version)${OUTPOST:+, outpost $OUTPOST}."
        echo
        echo '| | outpost | restic | borg | outpost/restic | outpost/borg |'
        echo '|---|---:|---:|---:|---:|---:|'
        row 'first backup s' first 2
        row 'no-change backup s' nochange 2
        row '1 % change backup s' change 2
        row 'restore s' restore 2
        row 'repository MB' repo 1
        row 'peak RSS MiB (first backup)' rss 1
        echo
        echo "First-backup throughput: outpost $(thr "${V[outpost:first]}") MB/s, restic $(thr "${V[restic:first]}")" \
             "MB/s, borg $(thr "${V[borg:first]}") MB/s."
        echo
        echo "Floors: \`cp -a\` of the corpus $(f 2 "$FLOOR_CP") s; \`tar -cf - | zstd -3 -T1\`" \
             "$(f 2 "$FLOOR_ZSTD") s ($(awk -v b="$FLOOR_ZSTD_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }') MB);" \
             "restore floor \`zstd -dc corpus.tar.zst | tar -x\` $(f 2 "$RESTORE_FLOOR") s" \
             "(outpost/floor $(ratio "${V[outpost:restore]}" "$RESTORE_FLOOR"), restic/floor" \
             "$(ratio "${V[restic:restore]}" "$RESTORE_FLOOR"), borg/floor $(ratio "${V[borg:restore]}" "$RESTORE_FLOOR"))."
        echo
        echo "Restore check (diff -r; metadata = types, modes, sizes, file mtimes, link targets):"
        for t in "${TOOLS[@]}"; do echo "- $t: content ${V[$t:content]}, metadata ${V[$t:meta]}"; done
        if [[ $SKIP_OUTPOST != 1 ]]; then
            echo
            echo "Targets:"
            target 'first backup ≥ 1.5 × restic throughput (outpost/restic ≤ 0.67)' \
                "$(ratio "${V[outpost:first]}" "${V[restic:first]}")" 'x <= 0.67'
            target 'no-change backup no slower than restic (≤ 1.00)' \
                "$(ratio "${V[outpost:nochange]}" "${V[restic:nochange]}")" 'x <= 1.00'
            target 'restore faster than restic (< 1.00)' \
                "$(ratio "${V[outpost:restore]}" "${V[restic:restore]}")" 'x < 1.00'
            target 'restore within 1.3 × the restore floor (outpost/floor ≤ 1.30)' \
                "$(ratio "${V[outpost:restore]}" "$RESTORE_FLOOR")" 'x <= 1.30'
            target 'repository ≤ borg + 5 % (outpost/borg ≤ 1.05)' \
                "$(ratio "${V[outpost:repo]}" "${V[borg:repo]}")" 'x <= 1.05'
            target 'peak RSS ≤ 300 MiB' "${V[outpost:rss]}" 'x <= 300'
        fi
        echo
    } | tee -a "$RESULTS"
}

# ---------------------------------------------------------------------------------------------------------
# 7. Cleanup (also on failure or Ctrl-C): put the corpus back, drop repositories, restores and caches.

cleanup() {
    local kind
    for kind in $CORPORA; do
        use_corpus "$kind"
        revert_change
        if [[ $BENCH_CLEAN == 1 ]]; then rm -rf -- "$CORPUS" "$MARKER" "$CORPUS.tar.zst"; fi
    done
    local m
    for m in $(findmnt -rn -o TARGET | grep "^$RUN/" || true); do umount "$m"; done
    rm -rf -- "$RUN" "$WORK/cache" "$WORK/target.img"
}

# ---------------------------------------------------------------------------------------------------------
# Main

install_packages
build_outpost
trap cleanup EXIT
: >"$RESULTS"

# run_corpus: every step above on the selected corpus, and its section of the report
run_corpus() {
    V=()
    revert_change                   # an earlier run may have been interrupted after the 1 % change
    make_corpus
    rm -rf -- "$RUN" "$WORK/cache"
    mkdir -p "$RUN" "$LOGS"
    LOGS=$WORK/logs/$CORPUS_KIND
    mkdir -p "$LOGS"

    CORPUS_BYTES=$(tree_bytes "$CORPUS")
    CORPUS_FILES=$(find "$CORPUS" -type f | wc -l)
    CORPUS_SMALL_SHARE=$(find "$CORPUS" -type f -printf '%s\n' | awk '{ n++; if ($1 < 16384) k++ } END { printf "%.0f", 100 * k / n }')
    CHANGED_FILES=0
    say "corpus $CORPUS_KIND: $((CORPUS_BYTES / 1000000)) MB in $CORPUS_FILES files; warming the page cache"
    warm_corpus

    # 4. Floors
    fresh_target "$RUN/restore"
    timed "$LOGS/floors.log" cp -a -- "$CORPUS" "$RUN/restore/cp"
    FLOOR_CP=$ELAPSED
    drop_target "$RUN/restore"
    say "floor: cp -a $FLOOR_CP s"
    sync
    local t0; t0=$(date +%s.%N)
    FLOOR_ZSTD_BYTES=$(tar -cf - -C "$(dirname "$CORPUS")" "$(basename "$CORPUS")" | zstd -3 -T1 | wc -c)
    FLOOR_ZSTD=$(since "$t0")
    say "floor: tar | zstd -3 -T1 $FLOOR_ZSTD s ($((FLOOR_ZSTD_BYTES / 1000000)) MB)"
    restore_floor "$RUN/restore"
    say "floor: zstd -dc | tar -x $RESTORE_FLOOR s"

    # 5. The same three states for every tool
    local tool
    for tool in "${TOOLS[@]}"; do phase_one "$tool"; done
    apply_change
    say "changed $CHANGED_FILES files (4 KiB appended to each)"
    for tool in "${TOOLS[@]}"; do phase_two "$tool"; done
    revert_change

    echo
    report
    LOGS=$WORK/logs
}

{
    echo "# Outpost vs restic vs borg — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
} >"$RESULTS"
for kind in $CORPORA; do
    use_corpus "$kind"
    run_corpus
done
