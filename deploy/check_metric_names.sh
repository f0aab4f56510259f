#!/bin/sh
# Every metric named in the alert and recording rules and in the Grafana
# dashboard must exist in a real /metrics scrape of the running service, so
# dashboards and alerts cannot silently point at nothing.
#
# Starts `fieldwatch serve` (embedded broker, free ports, a temporary data
# dir), submits the seed study (tests/data/seed-121.jsonl) and a small probe
# (tests/data/quality-probe.jsonl: an out-of-range value, a missing required
# item, a duplicate respondent and an invalid interview, so the quality
# counters that only appear once something is flagged appear) and the seed
# study's case dispositions (tests/data/seed-fieldwork.jsonl, for the
# fieldwork and interviewer series), scrapes /metrics, and compares:
#   - metric names: `fieldwatch_[a-z_]+` in deploy/prometheus/fieldwatch-rules.yaml,
#     deploy/prometheus/fieldwork-rules.yaml and
#     helm/fieldwatch/dashboards/fieldwatch.json (recording-rule outputs,
#     `fieldwatch:...`, do not match the pattern);
#   - label values: each `name{label="value",...}` selector there with equality
#     matchers must match at least one scraped series (except the few values
#     the seed study cannot produce, listed in NOT_IN_SEED below with the
#     source file that emits them).
#
# FIELDWATCH_BIN: the binary to run (default: build the debug binary with
# cargo, passing CARGO_BUILD_ARGS).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
rules="$root/deploy/prometheus/fieldwatch-rules.yaml"
fieldwork_rules="$root/deploy/prometheus/fieldwork-rules.yaml"
dashboard="$root/helm/fieldwatch/dashboards/fieldwatch.json"

if [ -z "${FIELDWATCH_BIN:-}" ]; then
  # shellcheck disable=SC2086 # CARGO_BUILD_ARGS is a list of arguments
  (cd "$root" && cargo build --quiet ${CARGO_BUILD_ARGS:-} --bin fieldwatch)
  target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  FIELDWATCH_BIN="$target/debug/fieldwatch"
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$FIELDWATCH_BIN" serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$work/data" \
  >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
i=0
until grep -q '^fieldwatch ready:' "$work/serve.out"; do
  i=$((i + 1))
  if [ "$i" -gt 120 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "fieldwatch serve did not start:" >&2
    tail -20 "$work/serve.err" >&2
    exit 1
  fi
  sleep 0.5
done
grpc=$(sed -n 's/.* grpc=\([^ ]*\).*/\1/p' "$work/serve.out")
http=$(sed -n 's/.* http=\([^ ]*\).*/\1/p' "$work/serve.out")
echo "serve: grpc $grpc, http $http"

"$FIELDWATCH_BIN" submit --server "$grpc" --file "$root/tests/data/seed-121.jsonl" >/dev/null 2>"$work/submit.err"
tail -1 "$work/submit.err"
# The probe holds one invalid interview on purpose: submit exits non-zero.
"$FIELDWATCH_BIN" submit --server "$grpc" --file "$root/tests/data/quality-probe.jsonl" >/dev/null 2>"$work/probe.err" || true
tail -1 "$work/probe.err"
grep -q 'submitted 3 lines: 2 accepted, 1 rejected' "$work/probe.err"
# The seed study's case dispositions (598 records of 292 cases): the
# disposition and interviewer series the fieldwork rules and panels read.
"$FIELDWATCH_BIN" submit --server "$grpc" --file "$root/tests/data/seed-fieldwork.jsonl" >/dev/null 2>"$work/fieldwork.err"
tail -1 "$work/fieldwork.err"

# 121 seed interviews + the probe's one new respondent (the duplicate counts once),
# and at least the 292 cases of the seed fieldwork.
i=0
until curl -fsS "$http/metrics" >"$work/metrics.txt" \
  && [ "$(grep '^fieldwatch_interviews' "$work/metrics.txt" | awk '{s += $2} END {print s}')" = 122 ] \
  && [ "$(grep '^fieldwatch_dispositions{dimension="all",' "$work/metrics.txt" | awk '{s += $2} END {print s + 0}')" -ge 292 ] \
  && grep -q '^fieldwatch_aggregator_caught_up 1' "$work/metrics.txt"; do
  i=$((i + 1))
  if [ "$i" -gt 120 ]; then
    echo "the aggregator did not count 122 interviews and 292 fieldwork cases" >&2
    exit 1
  fi
  sleep 0.5
done

grep -o '^fieldwatch_[a-z_]*' "$work/metrics.txt" | sort -u >"$work/scraped"
grep -ohE 'fieldwatch_[a-z_]+' "$rules" "$fieldwork_rules" "$dashboard" | sort -u >"$work/used"
missing=$(comm -23 "$work/used" "$work/scraped")
echo "scrape: $(wc -l <"$work/scraped") metric names; rules and dashboard use $(wc -l <"$work/used")"
if [ -n "$missing" ]; then
  echo "named in the rules or the dashboard but not in /metrics:" >&2
  echo "$missing" | sed 's/^/  /' >&2
  exit 1
fi

python3 - "$root" "$work/metrics.txt" "$rules" "$fieldwork_rules" "$dashboard" <<'EOF'
import re, sys
root = sys.argv.pop(1)
# Label values the seed study cannot show in a scrape: (metric, label, value)
# -> the source file that must emit the value, and why it is absent here.
# The series must still be scraped with another value of that label.
NOT_IN_SEED = {
    ("fieldwatch_fieldwork_eligibility_estimate", "method", "fixed"):
        ("src/aggregate/fieldwork_metrics.rs", "only with a numeric fieldwork.eligibility_estimate; the seed instrument's is proportional"),
}
scrape = {}
for line in open(sys.argv[1]):
    m = re.match(r'(fieldwatch_[a-z_]+)(?:\{(.*)\})? ', line)
    if m:
        labels = dict(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
        scrape.setdefault(m.group(1), []).append(labels)
bad = checked = 0
for path in sys.argv[2:]:
    text = open(path).read().replace('\\"', '"')
    for name, body in re.findall(r'(fieldwatch_[a-z_]+)\{([^}]*)\}', text):
        eq = dict(re.findall(r'([a-z_]+)="([a-z_0-9]+)"', body))
        if not eq:
            continue
        checked += 1
        known = [(k, v) for k, v in eq.items() if (name, k, v) in NOT_IN_SEED]
        if len(known) == 1 and len(eq) == 1:
            (k, v), = known
            src, why = NOT_IN_SEED[(name, k, v)]
            if f'"{v}"' in open(f"{root}/{src}").read() and any(k in s for s in scrape.get(name, [])):
                print(f"  {name}{{{body}}}: {k}=\"{v}\" {why} (emitted in {src}; {k} is scraped)")
                continue
        if not any(all(s.get(k) == v for k, v in eq.items()) for s in scrape.get(name, [])):
            print(f"  no scraped series matches {name}{{{body}}} ({path.rsplit('/', 1)[-1]})", file=sys.stderr)
            bad += 1
print(f"selectors: {checked} with fixed label values, {bad} match nothing")
sys.exit(1 if bad else 0)
EOF
echo "every metric named in the rules and the dashboard is in the scrape"
