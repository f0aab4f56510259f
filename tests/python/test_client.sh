#!/usr/bin/env bash
# The Python front-end example (clients/python/submit_example.py) against a
# live `fieldwatch serve`: the valid interview is stored (and counted by the
# aggregator), the broken one is refused with INVALID_ARGUMENT and one
# BadRequest field violation per problem; a rejection with 500 violations
# still arrives as INVALID_ARGUMENT (tests/python/many_violations.py).
#
# Needs: $PYTHON (default python3) with grpcio, grpcio-tools and
# grpcio-status, and a built binary (see tests/lib/serve.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/serve.sh
source tests/lib/check.sh
PYTHON=${PYTHON:-python3}
out=$(mktemp "${TMPDIR:-/tmp}/fieldwatch-pyclient.XXXXXX")
trap 'fw_stop; rm -f "$out"' EXIT

fw_start
status=0
"$PYTHON" clients/python/submit_example.py --server "$FW_GRPC" --http "$FW_HTTP_URL" >"$out" 2>&1 || status=$?
cat "$out"

has() { grep -Eq "$1" "$out"; }

check "the example exits 0" test "$status" -eq 0
check "the valid interview is stored" has '^valid interview [0-9a-f-]{36}: OK'
check "the toplines read with its read token include it (read-your-writes)" has '^live toplines include it: 1 interviews$'
check "the broken interview gets INVALID_ARGUMENT" has '^broken interview [0-9a-f-]{36}: INVALID_ARGUMENT: '
check "answers.q6 violates wrong_kind" has '^  answers\.q6: wrong_kind: '
check "answers.q99 violates unknown_item" has '^  answers\.q99: unknown_item: '
check "answers.q40 violates unknown_missing_code" has '^  answers\.q40: unknown_missing_code: '
check "exactly 3 field violations" test "$(grep -c '^  answers\.' "$out")" -eq 3
check "the aggregator counts the valid interview, not the broken one" fw_wait_interviews 1 60
ingest_counted() {
    local m
    m=$(fw_get /metrics)
    grep -q '^fieldwatch_ingest_records_total{outcome="accepted",study="le-trafficking"} 1$' <<<"$m" &&
        grep -q '^fieldwatch_ingest_records_total{outcome="rejected",study="le-trafficking"} 1$' <<<"$m"
}
check "ingest counted 1 accepted and 1 rejected" ingest_counted

# A rejection with 500 violations must still be INVALID_ARGUMENT for grpcio
# (whose metadata soft limit is 8 KiB): the trailer lists a bounded number.
violations_status=0
"$PYTHON" tests/python/many_violations.py --server "$FW_GRPC" >"$out" 2>&1 || violations_status=$?
cat "$out"
check "a 500-violation rejection arrives as INVALID_ARGUMENT with a bounded trailer" test "$violations_status" -eq 0
check "the aggregator still counts 1 interview" fw_wait_interviews 1 60

check_summary "python client"
