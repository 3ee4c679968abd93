# bench/lib.sh: what bench/compare.sh and bench/relay.sh share. Source it (after `set -euo pipefail`); it is
# not meant to be run on its own.
#
# It defines the work directory and the two corpora (BENCH_WORK, CORPUS_MB, SMALL_MB, CORPORA: see compare.sh's
# header): `use_corpus large|small` points CORPUS, MARKER and REVERT at one of them and `make_corpus` builds it
# (reused by later runs through its marker file); the undo of compare.sh's 1 % change (revert_change); restore
# targets on a fresh file system (fresh_target, drop_target); the restore floor (restore_floor); and small
# helpers: say, die, since, f, ratio, run, timed, in_dir, tree_bytes, apt_install, restored_root, meta_listing.

ROOT=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}
CORPUS_MB=${CORPUS_MB:-2000}
SMALL_MB=${SMALL_MB:-430}
CORPORA=${CORPORA:-large small}     # the corpora every run reports, in this order

mkdir -p "$WORK"
WORK=$(cd -P "$WORK" && pwd)
LOGS=$WORK/logs

# use_corpus large|small: CORPUS (absolute, no symlinks: restic and borg record this path), its MARKER (written
# when the corpus is complete) and REVERT (sizes and mtimes of the files compare.sh's 1 % change touched).
# large: mostly big files (the Swift toolchain, random data); small: system files, two thirds under 16 KiB.
use_corpus() {
    CORPUS_KIND=$1
    case $1 in
        large) CORPUS=$WORK/corpus ;;
        small) CORPUS=$WORK/corpus-small ;;
        *) die "unknown corpus $1 (large or small)" ;;
    esac
    MARKER=$CORPUS.ready
    REVERT=$CORPUS.revert
}
use_corpus large

export LC_ALL=C

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------
# Small helpers

# warm_corpus: read every file of the corpus into the page cache (untimed). Not `tar -cf - … >/dev/null`: GNU
# tar does not read file contents when its archive is /dev/null. Called before each timed step, because this
# machine runs DAMON proactive reclaim (`pageout`), which evicts page-cache pages that go cold between steps.
warm_corpus() { find "$CORPUS" -type f -print0 | xargs -0 -r cat >/dev/null; }

# seconds elapsed since $1 (a `date +%s.%N` value), 3 decimals
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }

# f DIGITS X: format a number; "-" stays "-"
f() { if [[ $2 == - ]]; then echo -; else awk -v x="$2" -v d="$1" 'BEGIN { printf "%.*f", d, x }'; fi; }

# ratio A B: A/B with 2 decimals, "-" if either is missing or B is 0
ratio() {
    if [[ $1 == - || $2 == - ]]; then echo -; return; fi
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
}

# run LOG CMD...: run a command (stdin from /dev/null) with its output appended to LOG; on failure show the
# end of LOG and stop.
run() {
    local log=$1; shift
    printf '\n$ %s\n' "$*" >>"$log"
    if ! "$@" </dev/null >>"$log" 2>&1; then
        printf 'error: command failed: %s\n--- last lines of %s:\n' "$*" "$log" >&2
        tail -n 25 "$log" >&2
        exit 1
    fi
}

# timed LOG CMD...: sync (untimed), then run CMD and set ELAPSED to its wall time in seconds
timed() {
    local log=$1; shift
    sync
    local t0; t0=$(date +%s.%N)
    run "$log" "$@"
    ELAPSED=$(since "$t0")
}

# in_dir DIR CMD...: run CMD in DIR (borg extract writes into the current directory)
in_dir() { (cd "$1" || exit; shift; "$@"); }

# bytes of the regular files under a directory
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }

# apt_install PKG...: install Debian packages (quietly)
apt_install() {
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
}

# Where the corpus landed inside a restore directory: restic and borg recreate the absolute path
# (DIR/work/.../corpus); accept DIR/corpus or DIR itself too.
restored_root() {
    if [[ -d $1$CORPUS ]]; then echo "$1$CORPUS"
    elif [[ -d $1/corpus ]]; then echo "$1/corpus"
    else echo "$1"; fi
}

# listing of types, modes, sizes, file mtimes and link targets, for the metadata comparison
meta_listing() {
    (cd "$1" && find . -mindepth 1 \( -type f -printf '%P f %m %s %T@\n' \) -o \( -type d -printf '%P d %m\n' \) \
        -o \( -type l -printf '%P l -> %l\n' \) -o -printf '%P other\n' | sort)
}

# ---------------------------------------------------------------------------------------------------------
# The corpus

# Put back the files compare.sh's 1 % change touched (also after an interrupted run): truncate to the old size
# and restore the old mtime.
revert_change() {
    [[ -f $REVERT ]] || return 0
    local size mtime path
    while IFS=$'\t' read -r size mtime path; do
        [[ -f $path ]] || continue
        truncate -s "$size" -- "$path"
        touch -m -d "@$mtime" -- "$path"
    done <"$REVERT"
    rm -f -- "$REVERT"
}

# fresh_corpus WANT: true (and CORPUS empty, MARKER and REVERT gone) when the corpus must be built; false when
# the one on disk was built with the same WANT (its marker) and is reused.
fresh_corpus() {
    if [[ -f $MARKER && $(<"$MARKER") == "$1" && -d $CORPUS ]]; then
        say "reusing the corpus in $CORPUS ($1)"
        return 1
    fi
    rm -rf -- "$CORPUS" "$MARKER" "$REVERT"
    mkdir -p "$CORPUS"
}

make_corpus() {
    if [[ $CORPUS_KIND == small ]]; then make_small_corpus; return; fi
    local want="toolchain=$CORPUS_MB MB"
    fresh_corpus "$want" || return 0

    local src=/opt/swift/usr/lib
    [[ -d $src ]] || src=/usr/lib
    local budget=$((CORPUS_MB * 1000000))
    local total; total=$(tree_bytes "$src")
    if ((total <= budget)); then
        say "corpus: copying all of $src ($((total / 1000000)) MB)"
        cp -a -- "$src" "$CORPUS/toolchain"
    else
        say "corpus: copying the first $CORPUS_MB MB of $src (sorted by path)"
        mkdir -p "$CORPUS/toolchain"
        # files and symlinks in path order, as long as they fit in the budget
        (cd "$src" && find . \( -type f -o -type l \) -printf '%s\t%P\n' | sort -t $'\t' -k 2 |
            awk -F '\t' -v b="$budget" '$1 + s <= b { s += $1; print $2 }' |
            xargs -d '\n' -r cp -a --parents -t "$CORPUS/toolchain")
    fi

    say "corpus: adding 50 MB of random data and 300 small text files"
    mkdir -p "$CORPUS/random" "$CORPUS/text"
    local i j
    for i in 1 2 3 4 5; do
        head -c 10M /dev/urandom >"$CORPUS/random/random-$i.bin"
    done
    for i in $(seq -w 1 10); do
        mkdir -p "$CORPUS/text/d$i"
        for j in $(seq -w 1 30); do
            {
                printf 'Outpost benchmark text file %s/%s\n\n' "$i" "$j"
                seq -f "line %g: the quick brown fox jumps over the lazy dog" 1 $((10#$i * 10#$j * 3))
            } >"$CORPUS/text/d$i/note-$j.txt"
        done
    done
    echo "$want" >"$MARKER"
}

# The small-file corpus: regular files and symlinks of /usr/include, /usr/lib/python3* and /usr/bin, in that
# order and path order within each, up to SMALL_MB MB (on this machine 13,475 files, 74 % under 16 KiB, 430 MB).
# Real files, so that they compress as real data does; the same on every run of one machine.
make_small_corpus() {
    local want="system=$SMALL_MB MB"
    fresh_corpus "$want" || return 0
    say "small-file corpus: copying $SMALL_MB MB of /usr/include, /usr/lib/python3*, /usr/bin"
    local src
    for src in /usr/include /usr/lib/python3* /usr/bin; do
        [[ -d $src ]] || continue
        (cd / && find "${src#/}" \( -type f -o -type l \) -printf '%s\t%p\n' | sort -t $'\t' -k 2)
    done | awk -F '\t' -v b=$((SMALL_MB * 1000000)) '$1 + s <= b { s += $1; print $2 }' |
        (cd / && xargs -d '\n' -r cp -a --parents -t "$CORPUS")
    echo "$want" >"$MARKER"
}

# ---------------------------------------------------------------------------------------------------------
# Restore targets and the restore floor

# fresh_target DIR: DIR on a new ext4 file system (a loop-mounted image under $WORK), when this runs as root
# and can mount one; else a plain empty directory. On this machine's root file system (ext4 without a journal)
# creating files soon after many were deleted costs the kernel a search for inodes not deleted recently
# (recently_deleted(), up to 5 minutes): the same restore took 1.2 s or 10 s depending on what the previous step
# deleted. A fresh file system gives every tool and the floor the same conditions.
fresh_target() {
    local dir=$1 img=$WORK/target.img
    drop_target "$dir"
    mkdir -p "$dir"
    if [[ $(id -u) == 0 ]] && command -v mkfs.ext4 >/dev/null; then
        local mb; mb=$(($(tree_bytes "$CORPUS") / 1000000 * 2 + 1024))
        rm -f -- "$img"
        truncate -s "${mb}M" "$img"
        if mkfs.ext4 -q -F "$img" && mount -o loop "$img" "$dir" 2>/dev/null; then
            TARGET_FS="a fresh ext4 file system (loop device) per restore"
            return
        fi
        rm -f -- "$img"
    fi
    TARGET_FS="an empty directory on $(df --output=fstype "$dir" | tail -1) (no loop mount possible)"
}

# drop_target DIR: unmount (if mounted by fresh_target) and delete DIR and the image
drop_target() {
    if mountpoint -q "$1" 2>/dev/null; then umount "$1"; fi
    rm -rf -- "$1" "$WORK/target.img"
}

# restore_floor DIR: the best time of 3 (RESTORE_FLOOR, s) of `zstd -dc corpus.tar.zst | tar -x` into a fresh target: what
# any restore that decompresses costs without verifying anything. The archive is made once per corpus (untimed)
# and read from the page cache.
restore_floor() {
    local dir=$1 archive=$CORPUS.tar.zst
    if [[ ! -f $archive || $archive -ot $MARKER ]]; then
        tar -cf - -C "$(dirname "$CORPUS")" "$(basename "$CORPUS")" | zstd -3 -T0 -q -f -o "$archive"
    fi
    # The best of 3 runs: one run now and then took 2.5 × the others (9.9 s against 4.0 s for the large corpus).
    local i t0 took
    RESTORE_FLOOR=
    for i in 1 2 3; do
        cat -- "$archive" >/dev/null
        fresh_target "$dir"
        sync
        t0=$(date +%s.%N)
        zstd -dc -- "$archive" | tar -xf - -C "$dir"
        took=$(since "$t0")
        drop_target "$dir"
        if [[ -z $RESTORE_FLOOR ]] || awk -v a="$took" -v b="$RESTORE_FLOOR" 'BEGIN { exit !(a < b) }'; then RESTORE_FLOOR=$took; fi
    done
}
