#!/bin/sh
# Checks everything under helm/ and deploy/ (the lead's .ci/run can call it
# as is):
#   1. the rule files (deploy/prometheus/fieldwatch-rules.yaml and
#      fieldwork-rules.yaml) are valid and their chart copies are not stale;
#   2. promtool unit tests of every alert and recording rule of both files
#      (deploy/prometheus/tests/*.yaml: fieldwork-rules-test.yaml tests
#      fieldwork-rules.yaml, the others fieldwatch-rules.yaml);
#   3. the chart, rendered with Helm's own engine (PyPI helm-python-sdk, which
#      embeds Helm's Go SDK: no helm binary needed) for the default values and
#      for deploy/values-production.yaml: schema, `helm lint --strict`, every
#      manifest validated against the Kubernetes schemas (PyPI
#      kubernetes-validate; the ServiceMonitor and PrometheusRule CRDs have no
#      schema there and are checked by deploy/check_chart.py instead), values
#      that must be refused;
#   4. with FIELDWATCH_BIN (or CHECK_RUN=1, which builds it): the rendered
#      configuration runs (ingest + aggregate on a local broker), and every
#      metric the rules and the dashboard name is in a real /metrics scrape
#      (deploy/check_metric_names.sh).
#
# Needs python3 (3.10+), promtool (Debian: apt-get install prometheus) and, for
# step 4, cargo. The Python packages live in a venv, created when missing:
# FIELDWATCH_DEPLOY_VENV (default /var/tmp/fieldwatch-deploy-venv). CHART_OUT:
# a directory to keep the rendered manifests in.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${FIELDWATCH_DEPLOY_VENV:-/var/tmp/fieldwatch-deploy-venv}

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is missing: apt-get update && apt-get install -y prometheus" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  "$venv/bin/pip" install --quiet helm-python-sdk kubernetes-validate PyYAML
fi

echo "== promtool check rules"
# Both rule files ship in the chart's one PrometheusRule (deploy/sync-rules.sh).
for f in fieldwatch-rules.yaml fieldwork-rules.yaml; do
  promtool check rules "$root/deploy/prometheus/$f"
  if ! cmp -s "$root/deploy/prometheus/$f" "$root/helm/fieldwatch/files/$f"; then
    echo "helm/fieldwatch/files/$f is stale: run deploy/sync-rules.sh" >&2
    exit 1
  fi
done

echo "== promtool test rules"
(cd "$root/deploy/prometheus/tests" && promtool test rules ./*.yaml)

if [ "${CHECK_RUN:-0}" = 1 ] && [ -z "${FIELDWATCH_BIN:-}" ]; then
  # shellcheck disable=SC2086 # CARGO_BUILD_ARGS is a list of arguments
  (cd "$root" && cargo build --quiet ${CARGO_BUILD_ARGS:-} --bin fieldwatch)
  target=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  FIELDWATCH_BIN="$target/debug/fieldwatch"
fi

# The rendered manifests; kept when CHART_OUT names a directory.
if [ -n "${CHART_OUT:-}" ]; then
  out=$CHART_OUT
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
echo "== chart"
if [ -n "${FIELDWATCH_BIN:-}" ]; then
  "$venv/bin/python" "$root/deploy/check_chart.py" --out "$out" --fieldwatch-bin "$FIELDWATCH_BIN"
  echo "== metric names"
  FIELDWATCH_BIN="$FIELDWATCH_BIN" "$root/deploy/check_metric_names.sh"
else
  "$venv/bin/python" "$root/deploy/check_chart.py" --out "$out"
  echo "(skipped running the rendered config and the metric-name check: set FIELDWATCH_BIN or CHECK_RUN=1)"
fi
echo "deploy checks passed"
