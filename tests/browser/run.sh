#!/usr/bin/env bash
# The page at `/` in a real browser: headless Chromium (Debian's `chromium`)
# driven by playwright-core opens the page of a live `fieldwatch serve`
# loaded with the seed's 121 interviews and its fieldwork, and checks that
# the numbers shown (interviews, RR1 57.6 %, a quota cell, a flag count, a
# topline) equal the JSON API's, that the flag filter and keyboard work, and
# saves screenshots at 1280 px and at phone width under the run's temp dir.
#
# Needs: chromium at $CHROMIUM (default /usr/bin/chromium), playwright-core
# under $FIELDWATCH_NODE (default /var/tmp/fieldwatch-node; .ci/run installs
# both), node, and a built binary (see tests/lib/serve.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/serve.sh
source tests/lib/check.sh
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export NODE_PATH=${FIELDWATCH_NODE:-/var/tmp/fieldwatch-node}/node_modules
shots=$(mktemp -d /tmp/fieldwatch-page.XXXXXX)
export FW_SHOTS=$shots
trap 'fw_stop' EXIT

fw_start
bin=$(fw_bin)
# Three seed respondents again under new submission ids: duplicate
# respondents, flagged for review and never counted, so the page has flags
# while the seed's figures (121 interviews, RR1 57.6 %) stay as they are.
head -n 3 tests/data/seed-121.jsonl | python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    r["submission_id"] += "-again"
    print(json.dumps(r))' >"$shots/duplicates.jsonl"
for f in tests/data/seed-121.jsonl tests/data/seed-fieldwork.jsonl "$shots/duplicates.jsonl"; do
    "$bin" submit --server "$FW_GRPC_URL" --file "$f" >/dev/null
done
check "the aggregator counts the seed's 121 interviews" fw_wait_interviews 121 180
status=0
node tests/browser/page_test.mjs "$FW_HTTP_URL" || status=$?
check "the page shows what the JSON API says (tests/browser/page_test.mjs)" test "$status" -eq 0
echo "screenshots: $shots"
check_summary "page in chromium"
