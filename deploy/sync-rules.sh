#!/bin/sh
# Copies the sources of the alert and recording rules,
# deploy/prometheus/fieldwatch-rules.yaml (service, quality, stalled
# fieldwork) and deploy/prometheus/fieldwork-rules.yaml (AAPOR rates,
# interviewer quality), into the chart, which can only read files under its
# own directory (.Files.Get). deploy/check.sh fails when a copy is stale.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
for f in fieldwatch-rules.yaml fieldwork-rules.yaml; do
  cp "$root/deploy/prometheus/$f" "$root/helm/fieldwatch/files/$f"
  echo "synced helm/fieldwatch/files/$f"
done
