#!/usr/bin/env python3
"""Renders the fieldwatch chart with Helm's own engine and checks what comes out.

Run by deploy/check.sh inside its venv (helm-python-sdk, kubernetes-validate,
PyYAML). For the default values and for deploy/values-production.yaml it:

- validates the values against values.schema.json and lints the chart (strict);
- renders the chart (helm-python-sdk: Helm's Go SDK, no helm binary) and writes
  the manifests to --out;
- validates every manifest against the Kubernetes OpenAPI schemas with
  kubernetes-validate (strict: unknown fields are errors), for the oldest
  supported and the newest Kubernetes version. ServiceMonitor and
  PrometheusRule are CRDs that kubernetes-validate has no schema for: they are
  skipped there and checked here instead (PrometheusRule with `promtool check
  rules`, and against deploy/prometheus/fieldwatch-rules.yaml followed by
  deploy/prometheus/fieldwork-rules.yaml);
- checks what the app needs: the config's listen addresses, a termination grace
  period above the app's shutdown bound, non-root read-only containers, probes,
  the dashboard JSON and its template variables.

It also renders values that must fail (missing TLS secret, a grace period
that is too short, a malformed token hash) and expects the failure.

With --fieldwatch-bin it finally runs the rendered configuration: a local
`fieldwatch broker` stands in for Kafka, `fieldwatch aggregate` and
`fieldwatch ingest` start with the rendered fieldwatch.yaml and the rendered
Secret's values as the environment the pods get, the seed study is submitted
with the generated front-end token, and the aggregator must count it and
report ready.
"""

from __future__ import annotations

import argparse
import json
import base64
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "fieldwatch"
# The rule files the chart ships, in the PrometheusRule's order; each is the
# single source, copied to files/ by deploy/sync-rules.sh.
RULE_FILES = ["fieldwatch-rules.yaml", "fieldwork-rules.yaml"]
RULES = [ROOT / "deploy" / "prometheus" / f for f in RULE_FILES]
CHART_RULES = [CHART / "files" / f for f in RULE_FILES]
# The chart's kubeVersion floor and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def render(values: dict, name: str = "fieldwatch", namespace: str = "survey") -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        return chart.render(values=values, name=name, namespace=namespace, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__template", path)
                docs.append(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "__template"}


def check_schemas(docs: list[dict]) -> None:
    for doc in docs:
        kn = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_KINDS:
            ok(f"{kn}: CRD, no Kubernetes schema (checked below instead)")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(strip(doc), version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                fail(f"{kn} against Kubernetes {version}: {path}: {e.message}")
                break
            except kubernetes_validate.SchemaNotFoundError as e:
                fail(f"{kn}: no schema for Kubernetes {version}: {e}")
                break
        else:
            ok(f"{kn}: valid (strict) for Kubernetes {', '.join(KUBE_VERSIONS)}")


def app_config(docs: list[dict]) -> dict:
    cms = [d for d in by_kind(docs, "ConfigMap") if "fieldwatch.yaml" in d.get("data", {})]
    if len(cms) != 1:
        fail(f"expected one ConfigMap with fieldwatch.yaml, found {len(cms)}")
        return {}
    return yaml.safe_load(cms[0]["data"]["fieldwatch.yaml"])


def check_app(docs: list[dict], values: dict) -> None:
    cfg = app_config(docs)
    ports = values.get("ports", {})
    grpc, http = ports.get("grpc", 50051), ports.get("http", 9464)
    if cfg.get("http", {}).get("listen") == f"0.0.0.0:{http}":
        ok(f"config: http.listen 0.0.0.0:{http}")
    else:
        fail(f"config: http.listen is {cfg.get('http')}")
    if cfg.get("ingest", {}).get("listen") == f"0.0.0.0:{grpc}":
        ok(f"config: ingest.listen 0.0.0.0:{grpc}")
    else:
        fail(f"config: ingest.listen is {cfg.get('ingest')}")
    if cfg.get("kafka", {}).get("brokers"):
        ok(f"config: kafka.brokers {cfg['kafka']['brokers']}")
    else:
        fail("config: kafka.brokers is not set")
    props = cfg.get("kafka", {}).get("client_properties", {})
    if any(not isinstance(v, str) for v in props.values()):
        fail(f"config: kafka.client_properties values must be strings: {props}")

    grace_ms = cfg.get("ingest", {}).get("shutdown_grace_ms", 10000)
    app_bound = math.ceil((grace_ms * 2 + 5000) / 1000)
    check_instance_ids(docs)
    for dep in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        name = dep["metadata"]["name"]
        spec = dep["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        tgp = spec.get("terminationGracePeriodSeconds", 30)
        if tgp > app_bound + sleep:
            ok(f"{name}: terminationGracePeriodSeconds {tgp} > preStop {sleep} s + app shutdown bound {app_bound} s")
        else:
            fail(f"{name}: terminationGracePeriodSeconds {tgp} <= preStop {sleep} + {app_bound} s")
        sc, psc = container.get("securityContext", {}), spec.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") and psc.get("runAsNonRoot") and not sc.get("allowPrivilegeEscalation", True):
            ok(f"{name}: non-root, read-only root filesystem, no privilege escalation")
        else:
            fail(f"{name}: security context is not non-root/read-only: {psc} {sc}")
        args = container.get("args", [])
        if args[1:] != ["--config", "/etc/fieldwatch/fieldwatch.yaml"] or args[0] not in ("ingest", "aggregate"):
            fail(f"{name}: unexpected args {args}")
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if "/etc/fieldwatch/fieldwatch.yaml" not in mounts:
            fail(f"{name}: the config file is not mounted")
        if cfg.get("instruments") and "/etc/fieldwatch/instruments" not in mounts:
            fail(f"{name}: instruments are configured but not mounted")
        ready = container.get("readinessProbe", {})
        if args[0] == "ingest":
            tls = bool(cfg.get("ingest", {}).get("tls"))
            want = "httpGet" if tls else "grpc"
            if want in ready:
                ok(f"{name}: readiness by {want} ({'TLS on: the kubelet gRPC probe has no TLS' if tls else 'gRPC health'})")
            else:
                fail(f"{name}: readiness should use {want}: {ready}")
            env = {e["name"] for e in container.get("env", [])}
            for need in ("FIELDWATCH_HMAC_KEY", "FIELDWATCH__INGEST__TOKENS"):
                if need not in env:
                    fail(f"{name}: env {need} missing")
        else:
            if ready.get("httpGet", {}).get("path") == "/readyz":
                ok(f"{name}: readiness by HTTP /readyz (caught up)")
            else:
                fail(f"{name}: readiness should be /readyz: {ready}")
        if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            fail(f"{name}: liveness should be /healthz")


def check_instance_ids(docs: list[dict]) -> None:
    """The aggregator is a StatefulSet passing each pod's stable name as aggregate.instance_id."""
    services = {s["metadata"]["name"] for s in by_kind(docs, "Service")}
    for w in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        name, kind = w["metadata"]["name"], w["kind"]
        (container,) = w["spec"]["template"]["spec"]["containers"]
        if container.get("args", [""])[0] != "aggregate":
            continue
        env = {e["name"]: e for e in container.get("env", [])}.get("FIELDWATCH__AGGREGATE__INSTANCE_ID", {})
        if kind == "StatefulSet" and env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name" \
                and w["spec"].get("serviceName") in services:
            ok(f"{name}: a StatefulSet; aggregate.instance_id is the pod's stable name (static membership)")
        else:
            fail(f"{name}: the aggregator must be a StatefulSet with FIELDWATCH__AGGREGATE__INSTANCE_ID from "
                 f"metadata.name and a serviceName of the chart: {kind}, {env}")


def check_rules(docs: list[dict], values: dict, out: Path) -> None:
    rules = by_kind(docs, "PrometheusRule")
    if not values.get("prometheusRule", {}).get("enabled"):
        if rules:
            fail("PrometheusRule rendered although disabled")
        return
    (rule,) = rules
    groups = rule["spec"]["groups"]
    path = out / "prometheusrule-groups.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    r = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    if r.returncode == 0:
        ok(f"PrometheusRule: promtool check rules: {r.stdout.strip().splitlines()[-1].strip()}")
    else:
        fail(f"PrometheusRule: promtool check rules failed:\n{r.stdout}{r.stderr}")
    plain = [g for path in RULES for g in yaml.safe_load(path.read_text())["groups"]]
    names = [g["name"] for g in groups]
    if len(names) != len(set(names)):
        fail(f"PrometheusRule: repeated group names {sorted({n for n in names if names.count(n) > 1})}")
    alerts = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    if len(alerts) != len(set(alerts)):
        fail(f"PrometheusRule: repeated alert names {sorted({a for a in alerts if alerts.count(a) > 1})}")
    shipped = [g for g in groups if g["name"] != "fieldwatch-study-thresholds"]
    window = values.get("prometheusRule", {}).get("fieldworkStalledAfter", "2h")
    if window == "2h":
        if shipped == plain:
            ok(f"PrometheusRule: {len(shipped)} groups are exactly deploy/prometheus/{' + '.join(RULE_FILES)}")
        else:
            fail(f"PrometheusRule: groups differ from deploy/prometheus/{' + '.join(RULE_FILES)}")
    else:
        text = "\n".join(
            r.get("expr", "") for g in shipped for r in g["rules"] if r.get("alert") == "FieldwatchFieldworkStalled"
        )
        if (
            f"fieldwatch:study_interviews:sum[{window}]" in text
            and f"[10m] offset {window})" in text
            and "fieldwatch:study_interviews:sum[2h]" not in text
            and "[10m] offset 2h)" not in text
        ):
            ok(f"PrometheusRule: fieldwork-stalled window set to {window}")
        else:
            fail(f"PrometheusRule: fieldwork-stalled window {window} not applied")
        if len(shipped) != len(plain) or [g["name"] for g in shipped] != [g["name"] for g in plain]:
            fail("PrometheusRule: groups differ from the plain rules files")
    thresholds = values.get("prometheusRule", {}).get("studyThresholds", {})
    extra = [g for g in groups if g["name"] == "fieldwatch-study-thresholds"]
    n = sum(len(t) for t in thresholds.values())
    got = len(extra[0]["rules"]) if extra else 0
    if got == n:
        ok(f"PrometheusRule: {n} per-study threshold rules")
    else:
        fail(f"PrometheusRule: expected {n} per-study threshold rules, got {got}")


def check_monitoring(docs: list[dict], values: dict) -> None:
    sms = by_kind(docs, "ServiceMonitor")
    if values.get("serviceMonitor", {}).get("enabled"):
        (sm,) = sms
        sel = sm["spec"]["selector"]["matchLabels"]
        services = [s for s in by_kind(docs, "Service")
                    if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        ports = [e["port"] for e in sm["spec"]["endpoints"]]
        for s in services:
            names = {p["name"] for p in s["spec"]["ports"]}
            if not all(p in names for p in ports):
                fail(f"ServiceMonitor: Service {s['metadata']['name']} lacks port {ports}")
        if len(services) == 2:
            ok(f"ServiceMonitor: selects {', '.join(s['metadata']['name'] for s in services)} on port {ports}")
        else:
            fail(f"ServiceMonitor: selects {len(services)} Services, expected 2 (ingest, aggregator)")
    elif sms:
        fail("ServiceMonitor rendered although disabled")

    dashboards = [d for d in by_kind(docs, "ConfigMap") if "fieldwatch.json" in d.get("data", {})]
    if values.get("grafanaDashboard", {}).get("enabled"):
        (cm,) = dashboards
        if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
            fail("dashboard ConfigMap lacks the grafana_dashboard: \"1\" label")
        dash = json.loads(cm["data"]["fieldwatch.json"])
        names = {v["name"] for v in dash["templating"]["list"]}
        missing = {"study", "form", "segment"} - names
        if missing:
            fail(f"dashboard lacks template variables {missing}")
        else:
            ok(f"dashboard: {len(dash['panels'])} panels, variables {sorted(names)}")
    elif dashboards:
        fail("dashboard ConfigMap rendered although disabled")


def check_values(label: str, values: dict, out: Path) -> None:
    print(f"== {label}")
    out.mkdir(parents=True, exist_ok=True)
    report = helm.lint(str(CHART), values, strict=True, namespace="survey")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
        {"error": e} for e in report.get("errors") or []]
    if problems:
        for p in problems:
            fail(f"lint: {p.get('path', '')} {p.get('error')}")
    else:
        ok(f"helm lint --strict: {len(report.get('messages', []))} messages, no warnings or errors")
    try:
        rendered = render(values)
    except helm.HelmError as e:
        fail(f"render failed: {e}")
        return
    docs = manifests(rendered)
    with open(out / "manifests.yaml", "w") as f:
        yaml.safe_dump_all([strip(d) for d in docs], f, sort_keys=False)
    ok(f"rendered {len(docs)} manifests ({', '.join(sorted({d['kind'] for d in docs}))}) to {out / 'manifests.yaml'}")
    check_schemas(docs)
    check_app(docs, values)
    check_rules(docs, values, out)
    check_monitoring(docs, values)


def expect_failure(label: str, values: dict, needle: str) -> None:
    try:
        render(values)
    except helm.HelmError as e:
        if needle in str(e):
            ok(f"refused: {label}")
        else:
            fail(f"{label}: failed, but not with `{needle}`: {e}")
        return
    fail(f"{label}: rendered although it must not")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_line(path: Path, prefix: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"no `{prefix}` line in {path}")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def smoke(binary: Path, work: Path) -> None:
    """Runs ingest and aggregate as the chart configures them."""
    print("== the rendered configuration runs (local broker in place of Kafka)")
    work.mkdir(parents=True, exist_ok=True)
    kafka, grpc, http_ingest, http_agg = (free_port() for _ in range(4))
    values = {
        "kafka": {"bootstrapServers": f"127.0.0.1:{kafka}"},
        "config": {"kafka": {"replication_factor": 1, "partitions": 3}},
        "ports": {"grpc": grpc, "http": http_ingest},
    }
    docs = manifests(render(values))
    cfg_path = work / "fieldwatch.yaml"
    cfg_path.write_text(yaml.safe_dump(app_config(docs)))
    (secret,) = by_kind(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        out = work / f"{name}.out"
        p = subprocess.Popen([str(binary), *args], stdout=out.open("w"), stderr=(work / f"{name}.err").open("w"),
                             env={**os.environ, **env})
        procs.append(p)
        return p, out

    try:
        broker, out = start("broker", ["broker", "--listen", f"127.0.0.1:{kafka}", "--data-dir", str(work / "broker")], {})
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", kafka), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or broker.poll() is not None:
                    raise RuntimeError("the local broker did not start")
                time.sleep(0.2)
        # What the aggregator StatefulSet passes: the config file and the common env.
        agg, out = start("aggregate", ["aggregate", "--config", str(cfg_path), "--http-addr", f"127.0.0.1:{http_agg}"],
                         {"FIELDWATCH__AGGREGATE__INSTANCE_ID": "fieldwatch-aggregator-0"})
        wait_line(out, "fieldwatch ready:", agg)
        ok("aggregate starts with the rendered fieldwatch.yaml")
        # What the ingest Deployment passes: the config file, the HMAC key and the tokens from the Secret.
        ingest_env = {"FIELDWATCH_HMAC_KEY": data["hmac-key"], "FIELDWATCH__INGEST__TOKENS": data["tokens"]}
        ing, out = start("ingest", ["ingest", "--config", str(cfg_path)], ingest_env)
        line = wait_line(out, "fieldwatch ready:", ing)
        if f"grpc=http://0.0.0.0:{grpc}" in line:
            ok(f"ingest starts with the rendered config and Secret, listening on 0.0.0.0:{grpc} with tokens")
        else:
            fail(f"ingest: unexpected ready line {line}")
        seed = ROOT / "tests" / "data" / "seed-121.jsonl"
        denied = subprocess.run([str(binary), "submit", "--server", f"http://127.0.0.1:{grpc}", "--file", str(seed),
                                 "--retry-for-secs", "5"], capture_output=True, text=True, env={**os.environ, "FIELDWATCH_TOKEN": "wrong"})
        if denied.returncode != 0:
            ok("a wrong token is refused")
        else:
            fail("ingest accepted a wrong token")
        sub = subprocess.run([str(binary), "submit", "--server", f"http://127.0.0.1:{grpc}", "--file", str(seed)],
                             capture_output=True, text=True, env={**os.environ, "FIELDWATCH_TOKEN": data["default-token"]})
        if sub.returncode == 0:
            ok(f"submit with the generated token: {sub.stderr.strip().splitlines()[-1]}")
        else:
            fail(f"submit with the generated token failed: {sub.stderr}")
        deadline = time.monotonic() + 60
        counted = 0
        while time.monotonic() < deadline:
            status, text = http_get(f"http://127.0.0.1:{http_agg}/metrics")
            counted = sum(int(float(l.split()[-1])) for l in text.splitlines() if l.startswith("fieldwatch_interviews"))
            if counted == 121 and http_get(f"http://127.0.0.1:{http_agg}/readyz")[0] == 200:
                break
            time.sleep(0.5)
        if counted == 121:
            ok("the aggregator counted 121 interviews and /readyz is 200")
        else:
            fail(f"the aggregator counted {counted} interviews, expected 121")
        if http_get(f"http://127.0.0.1:{http_ingest}/healthz")[0] == 200:
            ok("ingest /healthz is 200 on the rendered metrics port")
        else:
            fail("ingest /healthz did not answer")
    except RuntimeError as e:
        fail(f"smoke: {e}")
        for name in ("broker", "aggregate", "ingest"):
            err = work / f"{name}.err"
            if err.exists():
                print(f"--- {name} stderr\n" + "\n".join(err.read_text().splitlines()[-10:]))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="fieldwatch-chart-")))
    ap.add_argument("--fieldwatch-bin", type=Path, help="run the rendered configuration with this binary")
    args = ap.parse_args()

    print("== one source of rules")
    for rules, chart_rules in zip(RULES, CHART_RULES):
        if chart_rules.exists() and chart_rules.read_bytes() == rules.read_bytes():
            ok(f"helm/fieldwatch/files/{rules.name} is deploy/prometheus/{rules.name}")
        else:
            fail(f"helm/fieldwatch/files/{rules.name} is stale: run deploy/sync-rules.sh")

    everything_on = {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {"enabled": True},
    }
    production = yaml.safe_load((ROOT / "deploy" / "values-production.yaml").read_text())
    check_values("default values", {}, args.out / "default")
    check_values("default values, every optional object on", everything_on, args.out / "all-on")
    check_values("deploy/values-production.yaml", production, args.out / "production")

    print("== values that must be refused")
    expect_failure("ingest TLS without a secret", {"ingest": {"tls": {"enabled": True}}}, "ingest.tls.secretName")
    expect_failure("a termination grace period below the app's shutdown bound",
                   {"ingest": {"terminationGracePeriodSeconds": 20}}, "terminationGracePeriodSeconds")
    expect_failure("a token hash that is not 64 hex characters",
                   {"auth": {"tokens": [{"frontend": "x", "sha256": "abc"}]}}, "sha256")
    expect_failure("no tokens at all", {"auth": {"generateDefaultToken": False}}, "front-end tokens")
    expect_failure("SASL without a password", {"kafka": {"sasl": {"enabled": True, "username": "u"}}},
                   "kafkaSaslPassword")
    expect_failure("an unknown per-study threshold",
                   {"prometheusRule": {"enabled": True, "studyThresholds": {"s": {"nonsense": 1}}}}, "nonsense")

    if args.fieldwatch_bin:
        smoke(args.fieldwatch_bin, args.out / "smoke")

    print()
    if failures:
        print(f"chart check FAILED ({len(failures)} problems)")
        return 1
    print(f"chart check passed; manifests in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
