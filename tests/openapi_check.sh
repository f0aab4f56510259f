#!/usr/bin/env bash
# The OpenAPI document against a live `fieldwatch serve`: it is served at
# /api/v1/openapi.json, and schemathesis (PyPI) calls every operation of the
# HTTP port with generated parameters after the seed study is in: no 5xx, and
# every response matches the document. The ingest port's routes (tag `ingest`)
# are exercised by tests/intake.rs instead.
#
# Needs: $SCHEMATHESIS (default: schemathesis next to $PYTHON) and a built
# binary (see tests/lib/serve.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/serve.sh
source tests/lib/check.sh
PYTHON=${PYTHON:-python3}
SCHEMATHESIS=${SCHEMATHESIS:-$(dirname "$PYTHON")/schemathesis}
out=$(mktemp /tmp/fieldwatch-openapi.XXXXXX)
trap 'fw_stop; rm -f "$out"' EXIT

fw_start
"$(fw_bin)" submit --server "$FW_GRPC_URL" --file tests/data/seed-121.jsonl >/dev/null 2>&1
check "the aggregator counts the seed study" fw_wait_interviews 121 120

served() { fw_get /api/v1/openapi.json | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); assert d["openapi"].startswith("3.1"), d["openapi"]'; }
check "an OpenAPI 3.1 document is served at /api/v1/openapi.json" served

status=0
"$SCHEMATHESIS" run "$FW_HTTP_URL/api/v1/openapi.json" --url "$FW_HTTP_URL" \
    --checks not_a_server_error,response_schema_conformance --exclude-tag ingest \
    --max-examples 25 --request-timeout 30 --no-color >"$out" 2>&1 || status=$?
tail -n 25 "$out"
check "schemathesis: no 5xx and every response matches the schema" test "$status" -eq 0

check_summary "openapi"
