#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (docs/fuzzing.md) with the fuzzer and address sanitizers and runs each for
# a bounded time, starting from the committed seed corpus and the committed crash reproducers (regressions).
# Exits non-zero when any target crashes, traps, leaks past its memory limit or hangs; prints one line per target.
#
#   Deploy/fuzz.sh                 build, then run every target FUZZ_SECONDS (default 20) seconds
#   Deploy/fuzz.sh tree wire       only these targets
#   Deploy/fuzz.sh --seeds         rewrite Fuzz/corpus/<target>/ from the product's encoders, then stop
#
# Environment: FUZZ_SECONDS (per target), FUZZ_JOBS_NICE (nice level, default 10), FUZZ_RSS_MB (default 2048).
set -euo pipefail
cd "$(dirname "$0")/.."

all=(wire pack tree point zstd vaultpack)
declare -A product=([wire]=FuzzWire [pack]=FuzzPack [tree]=FuzzTree [point]=FuzzPoint [zstd]=FuzzZstd [vaultpack]=FuzzVaultPack)
seconds="${FUZZ_SECONDS:-20}"
nice_level="${FUZZ_JOBS_NICE:-10}"
rss="${FUZZ_RSS_MB:-2048}"
seeds=no
targets=()
for arg in "$@"; do
  case "$arg" in
    --seeds) seeds=yes ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $arg (see --help)" >&2; exit 64 ;;
    *) [ -n "${product[$arg]:-}" ] || { echo "fuzz.sh: no fuzz target named '$arg'; the targets are: ${all[*]}" >&2; exit 64; }
       targets+=("$arg") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

ls /opt/swift/usr/lib/swift/clang/lib/linux/libclang_rt.fuzzer*.a >/dev/null 2>&1 || [ -n "$(find "$(dirname "$(dirname "$(command -v swift)")")" -name 'libclang_rt.fuzzer*.a' -print -quit 2>/dev/null)" ] || {
  echo "fuzz.sh: this Swift toolchain has no libFuzzer runtime (libclang_rt.fuzzer-*.a): use the swift.org Linux toolchain" >&2; exit 1; }

# Release with coverage and ASan on every Swift module (C dependencies are left uninstrumented); -enable-testing
# so that FuzzPack reaches the store's internal PackReader. Scratch in Fuzz/.build (ignored by git).
build_started=$(date +%s)
mkdir -p Fuzz/.build
flags=(-c release --package-path Fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing)
build() { nice -n "$nice_level" swift build "${flags[@]}" >Fuzz/.build/build-log.txt 2>&1; }
built=yes
build || built=no
# SwiftPM does not notice files moved in a path dependency (the root package): when its cached build plan names
# a file that is gone, drop the plan (not the build products) and plan again.
if [ $built = no ] && grep -q 'because of missing inputs' Fuzz/.build/build-log.txt; then
  rm -f Fuzz/.build/release.yaml
  built=yes
  build || built=no
fi
if [ $built = no ]; then
  grep -E 'error:' Fuzz/.build/build-log.txt | head -20 >&2 || true
  tail -20 Fuzz/.build/build-log.txt >&2
  echo "fuzz.sh: building the fuzz targets failed (full log: Fuzz/.build/build-log.txt)" >&2
  exit 1
fi
bin="$(swift build "${flags[@]}" --show-bin-path)"
echo "fuzz: built in $(( $(date +%s) - build_started )) s ($bin)"

# libFuzzer handles crashes itself: the Swift runtime's backtracer would otherwise hold the pipe open.
export SWIFT_BACKTRACE=enable=no
# Leak detection stays on: libFuzzer only enforces its malloc limit (an input-controlled allocation above
# FUZZ_RSS_MB is a finding) while it watches for leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:allocator_may_return_null=0}"

if [ "$seeds" = yes ]; then
  for t in "${targets[@]}"; do
    rm -rf "Fuzz/corpus/$t"
    mkdir -p "Fuzz/corpus/$t"
    OUTPOST_FUZZ_SEEDS="$PWD/Fuzz/corpus/$t" "$bin/${product[$t]}" >"Fuzz/.build/seeds-$t.log" 2>&1 \
      || { cat "Fuzz/.build/seeds-$t.log" >&2; echo "fuzz.sh: writing the seeds of $t failed" >&2; exit 1; }
    echo "fuzz $t: $(ls "Fuzz/corpus/$t" | wc -l) seeds, $(du -sk "Fuzz/corpus/$t" | cut -f1) KiB in Fuzz/corpus/$t"
  done
  exit 0
fi

work=Fuzz/.build/fuzz-work
mkdir -p "$work"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$work/artifacts-$t"
  dirs=("$work/$t" "Fuzz/corpus/$t")
  [ -d "Fuzz/crashes/$t" ] && [ -n "$(ls -A "Fuzz/crashes/$t")" ] && dirs+=("Fuzz/crashes/$t")
  dict=(); [ -f "Fuzz/dicts/$t.dict" ] && dict=(-dict="Fuzz/dicts/$t.dict")
  log="$work/$t.log"
  started=$(date +%s)
  set +e
  nice -n "$nice_level" "$bin/${product[$t]}" "${dirs[@]}" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb="$rss" -malloc_limit_mb="$rss" -print_final_stats=1 -artifact_prefix="$work/artifacts-$t/" >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - started ))
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  corp=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  if [ $rc -eq 0 ]; then
    echo "fuzz $t: ok, ${runs:-?} inputs in ${elapsed} s, coverage ${cov:-?}, corpus ${corp:-?}"
  else
    failed+=("$t")
    artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //' || true)
    kind=$(grep -oE 'ERROR: (libFuzzer|AddressSanitizer): [a-zA-Z -]+' "$log" | head -1 || true)
    echo "fuzz $t: FAILED after ${elapsed} s (${kind:-exit $rc}); reproducer: ${artifact:-none}; log: $log"
    grep -E 'Fatal error|fuzz property|ERROR:|#[0-9]+ 0x.* in .*(Outpost|Fuzz)' "$log" | head -15 | sed 's/^/    /'
    echo "    reproduce: SWIFT_BACKTRACE=enable=no $bin/${product[$t]} ${artifact:-<reproducer>}"
  fi
done
# The closing line in the plain "N passed, N failed" form test runners are read by.
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed; commit each reproducer under Fuzz/crashes/<target>/ with its fix (docs/fuzzing.md)"
  echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
  exit 1
fi
echo "fuzz: every target ran ${seconds} s without a failure"
echo "fuzz: ${#targets[@]} passed, 0 failed"
