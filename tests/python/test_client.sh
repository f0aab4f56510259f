#!/usr/bin/env bash
# The Python front-end example (clients/python/submit_example.py) against a
# live `fieldwatch serve`: the valid interview is stored (and counted by the
# aggregator), the broken one is refused with INVALID_ARGUMENT and one
# BadRequest field violation per problem.
#
# Needs: $PYTHON (default python3) with grpcio, grpcio-tools and
# grpcio-status, and a built binary (see tests/lib/serve.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/serve.sh
source tests/lib/check.sh
PYTHON=${PYTHON:-python3}
out=$(mktemp /tmp/fieldwatch-pyclient.XXXXXX)
trap 'fw_stop; rm -f "$out"' EXIT

fw_start
status=0
"$PYTHON" clients/python/submit_example.py --server "$FW_GRPC" --http "$FW_HTTP_URL" >"$out" 2>&1 || status=$?
cat "$out"

has() { grep -Eq "$1" "$out"; }

check "the example exits 0" test "$status" -eq 0
check "the valid interview is stored" has '^valid interview PY-[0-9a-f]+-1-1: OK'
check "the toplines read with its read token include it (read-your-writes)" has '^live toplines include it: 1 interviews$'
check "the broken interview gets INVALID_ARGUMENT" has '^broken interview PY-[0-9a-f]+-2-1: INVALID_ARGUMENT: '
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

check_summary "python client"
