#!/usr/bin/env bash
# Scrapes /metrics of a live `fieldwatch serve` and checks it:
#
# 1. after the seed study (tests/data/seed-121.jsonl), `promtool check metrics`
#    passes (names, units, _total suffixes, HELP/TYPE lines);
# 2. hostile input does not grow the number of series: 3,000 valid interviews
#    with random strings in every free field (tests/data/make_hostile.py) must
#    leave exactly the same set of series, land in the region segment `other`,
#    and keep the exposition valid for promtool.
#
# "Before" is the scrape right after the seed: the aggregator exports every
# segment slot the instrument allows (declared values, `other`, `unknown`)
# from the start, so the series set is fixed before any hostile input.
#
# Needs: promtool, $PYTHON (default python3) with PyYAML, and a built binary
# (see tests/lib/serve.sh). HOSTILE_COUNT overrides the 3,000.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/serve.sh
source tests/lib/check.sh
PYTHON=${PYTHON:-python3}
HOSTILE=${HOSTILE_COUNT:-3000}

command -v promtool >/dev/null || { echo "error: promtool not found (apt-get install prometheus)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/fieldwatch-promtool.XXXXXX")
trap 'fw_stop; rm -rf "$work"' EXIT

# Series identities (metric name and labels, without the value), sorted.
series() { grep '^fieldwatch_' "$1" | sed -E 's/ [^ ]+$//' | sort; }
count_series() { grep -c '^fieldwatch_' "$1"; }
promtool_ok() {
    echo "promtool check metrics <$(basename "$1")"
    promtool check metrics <"$1"
}
submit() { "$(fw_bin)" submit --server "$FW_GRPC_URL" --file "$1" >/dev/null; }

fw_start

echo "== seed study: tests/data/seed-121.jsonl"
check "the seed is accepted" submit tests/data/seed-121.jsonl
check "the aggregator counts 121 interviews" fw_wait_interviews 121
fw_get /metrics >"$work/seed.txt"
check "promtool accepts the metrics after the seed" promtool_ok "$work/seed.txt"
seed_n=$(count_series "$work/seed.txt")

echo "== hostile input: $HOSTILE interviews with random strings in every free field"
"$PYTHON" tests/data/make_hostile.py --count "$HOSTILE" --seed 1 >"$work/hostile.jsonl"
cp "$work/seed.txt" "$work/before.txt"
before=$seed_n

start=$SECONDS
check "all $HOSTILE hostile interviews are accepted" submit "$work/hostile.jsonl"
check "the aggregator counts $((121 + HOSTILE)) interviews" fw_wait_interviews $((121 + HOSTILE)) 300
echo "submitted and counted in $((SECONDS - start))s"
fw_get /metrics >"$work/after.txt"
after=$(count_series "$work/after.txt")

echo "series before: $before after: $after"
same_series() {
    diff <(series "$work/before.txt") <(series "$work/after.txt") >"$work/diff" && [[ "$before" == "$after" ]] && return 0
    echo "first differences (< before, > after):"
    head -n 20 "$work/diff"
    return 1
}
check "hostile input adds no series and changes no label (before == after)" same_series
in_other() {
    local n
    n=$(grep -E '^fieldwatch_segment_interviews\{dimension="region",segment="other",study="le-trafficking"\} ' \
        "$work/after.txt" | awk '{print $NF}')
    echo "region segment \"other\": ${n:-absent}"
    [[ "$n" == "$HOSTILE" ]]
}
check "every undeclared region value counts under segment=\"other\"" in_other
check "no submitted string reaches the exposition (printable ASCII only, no injected line)" \
    eval '! LC_ALL=C grep -q "[^ -~]" "$work/after.txt" && ! grep -q injected "$work/after.txt"'
check "promtool accepts the metrics after hostile input" promtool_ok "$work/after.txt"

check_summary "promtool check"
