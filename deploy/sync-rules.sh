#!/bin/sh
# Copies the one source of the alert and recording rules,
# deploy/prometheus/fieldwatch-rules.yaml, into the chart, which can only read
# files under its own directory (.Files.Get). deploy/check.sh fails when the
# copy is stale.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cp "$root/deploy/prometheus/fieldwatch-rules.yaml" "$root/helm/fieldwatch/files/fieldwatch-rules.yaml"
echo "synced helm/fieldwatch/files/fieldwatch-rules.yaml"
