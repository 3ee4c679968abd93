# bench/lib.sh: what bench/compare.sh and bench/relay.sh share. Source it (after `set -euo pipefail`); it is
# not meant to be run on its own.
#
# It defines the work directory and the corpus (BENCH_WORK, CORPUS_MB: see compare.sh's header), the corpus
# builder (make_corpus, reused by later runs through the marker file), the undo of compare.sh's 1 % change
# (revert_change) and small helpers: say, die, since, f, ratio, run, timed, in_dir, tree_bytes, apt_install,
# restored_root, meta_listing.

ROOT=$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-$ROOT/bench/work}
CORPUS_MB=${CORPUS_MB:-2000}

mkdir -p "$WORK"
WORK=$(cd -P "$WORK" && pwd)
CORPUS=$WORK/corpus                 # absolute, no symlinks: restic and borg record this path
MARKER=$WORK/corpus.ready           # written when the corpus is complete
REVERT=$WORK/corpus.revert          # sizes and mtimes of the files compare.sh's 1 % change touched
LOGS=$WORK/logs

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

make_corpus() {
    local want="toolchain=$CORPUS_MB MB"
    if [[ -f $MARKER && $(<"$MARKER") == "$want" && -d $CORPUS ]]; then
        say "reusing the corpus in $CORPUS ($want)"
        return
    fi
    rm -rf -- "$CORPUS" "$MARKER" "$REVERT"
    mkdir -p "$CORPUS"

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
