#!/usr/bin/env bash
# Checks a running relay against docs/openapi/relay.yaml with schemathesis (property-based API testing): starts
# the already-built `outpost` (swift build --build-tests) as a relay on 127.0.0.1 in a temporary data directory,
# enrolls one machine, and sends generated requests, valid and invalid, to every documented operation with that
# machine's credential. Fails when the relay answers 5xx, or a status code, content type or body the document
# does not allow. The relay is stopped at the end, whatever happens. See docs/fuzzing.md.
#
# Environment: OUTPOST (binary, default .build/debug/outpost), SCHEMATHESIS_EXAMPLES (per operation, default 100),
# SCHEMATHESIS_SECONDS (hard limit on the whole run, default 300), SCHEMATHESIS_SEED (default: a random seed, printed),
# SCHEMATHESIS_CHECKS (default: not_a_server_error, status_code/content_type/response_schema_conformance; "all").
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
outpost="${OUTPOST:-$root/.build/debug/outpost}"
examples="${SCHEMATHESIS_EXAMPLES:-100}"
limit="${SCHEMATHESIS_SECONDS:-300}"
seed="${SCHEMATHESIS_SEED:-$RANDOM$RANDOM}"
checks="${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}"
started=$(date +%s)

[ -x "$outpost" ] || { echo "schemathesis.sh: $outpost is not built: run 'swift build --build-tests' first (or set OUTPOST)" >&2; exit 1; }

# schemathesis in a virtual environment of its own, pinned by Deploy/schemathesis-requirements.txt.
venv="$root/.build-schemathesis/venv"
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1 || ! cmp -s Deploy/schemathesis-requirements.txt "$venv/requirements.txt"; then
  mkdir -p "$root/.build-schemathesis"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r Deploy/schemathesis-requirements.txt
  cp Deploy/schemathesis-requirements.txt "$venv/requirements.txt"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/outpost-schemathesis.XXXXXX")"
relay_pid=""
stop_relay() {
  if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
    kill -TERM "$relay_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  relay_pid=""
}
cleanup() { stop_relay; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

"$outpost" relay init --data "$work/relay" --hostname localhost >"$work/setup.log" 2>&1 || { cat "$work/setup.log" >&2; exit 1; }
"$outpost" relay serve --data "$work/relay" --listen 127.0.0.1:0 --port-file "$work/port" 2>"$work/relay.log" &
relay_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/port" ] && break
  kill -0 "$relay_pid" 2>/dev/null || { cat "$work/relay.log" >&2; echo "schemathesis.sh: the relay exited before listening" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/port" ] || { cat "$work/relay.log" >&2; echo "schemathesis.sh: the relay did not listen within 30 s" >&2; exit 1; }
port="$(tr -d '[:space:]' <"$work/port")"
url="https://127.0.0.1:$port"

# Enroll one machine through the API itself, as `outpost enroll` does, to get its credential.
token="$("$outpost" relay add-machine --data "$work/relay" schemathesis-machine 2>>"$work/setup.log")"
credential="$(printf '{"token":"%s"}' "$token" \
  | curl -sSk --fail-with-body -X POST -H 'Content-Type: application/json' --data-binary @- "$url/v1/enroll" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["credential"])')"
[ -n "$credential" ] || { echo "schemathesis.sh: enrolling a machine failed" >&2; exit 1; }

echo "schemathesis: relay at $url, seed $seed, $examples examples per operation"
set +e
# --max-examples bounds each operation; timeout bounds the whole run (schemathesis's --max-time would instead
# keep fuzzing until it is spent).
# Deploy/schemathesis_hooks.py checks the binary answers (id lists, blob frames) that OpenAPI cannot describe.
# Run from .build-schemathesis, where schemathesis keeps its replay files (.schemathesis/).
(cd "$root/.build-schemathesis" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$root/Deploy${PYTHONPATH:+:$PYTHONPATH}" \
timeout --kill-after=10 "$limit" "$venv/bin/schemathesis" run "$root/docs/openapi/relay.yaml" \
  --url "$url" --tls-verify false \
  --header "Authorization: Bearer $credential" \
  --checks "$checks" \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" --seed "$seed" --workers 2 --request-timeout 30 \
  --generation-database none --no-color --output-sanitize true \
  --report junit --report-dir "$root/.build-schemathesis/report") 2>&1 | tee "$work/schemathesis.out"
rc=${PIPESTATUS[0]}
set -e
crashed=""
kill -0 "$relay_pid" 2>/dev/null || crashed=" (the relay died during the run)"
stop_relay

if grep -qE 'Fatal error|fatalError|SIGILL|Illegal instruction|Segmentation fault' "$work/relay.log"; then
  crashed=" (the relay logged a crash: see below)"
  grep -E -B2 -A10 'Fatal error|SIGILL|Illegal instruction|Segmentation fault' "$work/relay.log" | head -40 >&2
fi
elapsed=$(( $(date +%s) - started ))
# Operations tested and failed, for the closing line in the plain "N passed, N failed" form.
tested=$(grep -oE '^ *Tested: [0-9]+' "$work/schemathesis.out" | grep -oE '[0-9]+' | tail -1 || true)
bad=$(grep -cE '^_+ [A-Z]+ /' "$work/schemathesis.out" || true)
tested=${tested:-0}; bad=${bad:-0}
[ "$rc" -eq 0 ] && [ -z "$crashed" ] || [ "$bad" -gt 0 ] || bad=1
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "schemathesis: FAILED, the run did not finish within ${limit} s (SCHEMATHESIS_SECONDS)$crashed"
  echo "schemathesis: $(( tested > bad ? tested - bad : 0 )) passed, $bad failed"
  exit 1
elif [ "$rc" -ne 0 ] || [ -n "$crashed" ]; then
  echo "--- last lines of the relay's log:" >&2; tail -30 "$work/relay.log" >&2
  echo "schemathesis: FAILED (exit $rc) after ${elapsed} s, seed $seed: the relay disagrees with docs/openapi/relay.yaml$crashed; rerun with SCHEMATHESIS_SEED=$seed"
  echo "schemathesis: $(( tested > bad ? tested - bad : 0 )) passed, $bad failed"
  exit 1
fi
echo "schemathesis: every response matched docs/openapi/relay.yaml (${elapsed} s, seed $seed)"
echo "schemathesis: $tested passed, 0 failed"
