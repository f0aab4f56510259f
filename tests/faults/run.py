#!/usr/bin/env python3
"""Fault-injection suite: real `fieldwatch` processes (broker, ingest, aggregators)
on loopback, faults injected while interviews stream in, and at the end an exact
comparison of the live counts (summed over aggregator instances, from /metrics)
with the toplines `fieldwatch report` computes offline from the same file.

Scenarios (all by default; pick with --only NAME):
  kill      the aggregator SIGKILLed five times at random points while the
            interviews stream in, restarted each time
  scale     two, then three aggregator instances joining and leaving during the
            stream; the sum over instances must equal the offline result
  broker    the broker process stopped and restarted during ingest while
            `submit` retries; nothing lost, nothing counted twice
  twice     the same file submitted twice: only the retry counter moves
  three     three aggregators, one SIGKILLed and restarted; every instance
            answers for the whole study exactly as `report` does (toplines,
            fieldwork, quotas, flags), planted possible duplicates across
            partitions are flagged, no `_total` series goes down
            (tests/faults/studywide.py)

The sums over instances include the quota gauges; the kill scenario also
compares the quotas JSON with the offline report's.

Usage: tests/faults/run.py --bin target/release/fieldwatch [--records 50000] [--seed 7] [--only kill]
Standard library only. Every process is killed at the end, whatever happens, and
everything the run writes (the interviews file, each scenario's broker data and
logs) lives in one temporary directory that is removed at the end, also on
failure (a failed scenario's logs are printed first); --keep keeps it.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import shutil
import tempfile
import time
import urllib.request

import studywide

STUDY = "le-trafficking"
PROCS = []


def log(msg):
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class Proc:
    def __init__(self, name, args, workdir, env=None):
        self.name, self.args, self.workdir, self.env = name, args, workdir, env
        self.p = None
        self.start()

    def start(self):
        out = open(os.path.join(self.workdir, f"{self.name}.log"), "ab")
        self.p = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                  cwd=self.workdir, start_new_session=True)
        PROCS.append(self)

    def wait_ready(self, timeout=60):
        path = os.path.join(self.workdir, f"{self.name}.log")
        end = time.time() + timeout
        while time.time() < end:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.p.returncode}; see {path}")
            with open(path, "rb") as f:
                if b"fieldwatch ready:" in f.read():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {path}")

    def send(self, sig):
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=40):
        self.send(sig)
        if self.p:
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def cleanup():
    for pr in PROCS:
        if pr.p and pr.p.poll() is None:
            pr.p.kill()
            pr.p.wait()


class Cluster:
    def __init__(self, binary, workdir, scenario):
        self.bin, self.dir = binary, workdir
        self.broker_port = free_port()
        self.grpc_port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "FIELDWATCH__KAFKA__BROKERS": f"127.0.0.1:{self.broker_port}",
            "FIELDWATCH_HMAC_KEY": "fault-injection-test-key-0123456789",
            "FIELDWATCH__AGGREGATE__SESSION_TIMEOUT_MS": "6000",
            "FIELDWATCH__AGGREGATE__SNAPSHOT_INTERVAL_MS": "2000",
            "FIELDWATCH__AGGREGATE__GROUP_ID": f"faults-{scenario}",
            "RUST_LOG": "info,tansu=warn,libsql=warn",
        })
        if scenario == "broker":
            # tansu 0.6.0's storage panics ("more or less than one row",
            # lite.rs:503) when an idempotent producer bumps its epoch across a
            # broker restart, and the broker stops storing anything. Exactness
            # does not rest on idempotence: duplicates are counted once by
            # submission id, which this scenario checks.
            self.env["FIELDWATCH__KAFKA__IDEMPOTENCE"] = "false"
        self.broker = self.start_broker()
        self.ingest = Proc("ingest", [self.bin, "ingest", "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
                                      "--http-addr", f"127.0.0.1:{free_port()}"], self.dir, self.env)
        self.ingest.wait_ready()
        self.aggregators = {}

    def start_broker(self):
        b = Proc("broker", [self.bin, "broker", "--listen", f"127.0.0.1:{self.broker_port}",
                            "--data-dir", os.path.join(self.dir, "broker")], self.dir, self.env)
        wait_port(self.broker_port)
        return b

    def start_aggregator(self, name):
        port = free_port()
        a = Proc(name, [self.bin, "aggregate", "--http-addr", f"127.0.0.1:{port}"], self.dir, self.env)
        a.port = port
        a.wait_ready()
        self.aggregators[name] = a
        return a

    def restart(self, a):
        a.start()
        a.wait_ready()

    def submit(self, path):
        return Proc("submit", [self.bin, "submit", "--server", f"http://127.0.0.1:{self.grpc_port}",
                               "--file", path, "--retry-for-secs", "120"], self.dir, self.env)

    def live(self):
        """Sums every fieldwatch result series over the running aggregators."""
        total = {}
        for a in self.aggregators.values():
            if a.p.poll() is not None:
                continue
            _, text = http(f"http://127.0.0.1:{a.port}/metrics")
            for line in text.splitlines():
                m = re.match(r'^(fieldwatch_[a-z_]+)\{(.*)\} (\S+)$', line)
                if not m:
                    continue
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
                key = (m.group(1), labels)
                total[key] = total.get(key, 0) + float(m.group(3))
        return total

    def ready(self):
        for a in self.aggregators.values():
            if a.p.poll() is None:
                try:
                    code, _ = http(f"http://127.0.0.1:{a.port}/readyz")
                except OSError:
                    return False
                if code != 200:
                    return False
        return True

    def wait_counted(self, n, retries=0, timeout=300):
        """Waits until the aggregators count `n` interviews and at least
        `retries` retries (a resubmitted file adds only retries, so the
        interview count alone says nothing of the second pass), and are ready."""
        end = time.time() + timeout
        got = None
        while time.time() < end:
            try:
                live = self.live()
                got = sum(v for (name, labels), v in live.items()
                          if name == "fieldwatch_interviews" and ("study", STUDY) in labels)
                seen = sum(v for (name, labels), v in live.items()
                           if name == "fieldwatch_duplicates" and ("kind", "retry") in labels)
                if got == n and seen >= retries and self.ready():
                    return live
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"live interviews {got} != {n} after {timeout}s")


def expected(binary, path, workdir):
    """The offline report as the series /metrics should carry."""
    exp = {}
    report = None
    for by in (None, "position", "region"):
        args = [binary, "report", "--input", path, "--format", "json"] + (["--by", by] if by else [])
        report = json.loads(subprocess.run(args, check=True, capture_output=True, cwd=workdir).stdout)
        for g in report["groups"]:
            dim, seg = (by, g["segment"]) if by else ("all", "all")
            for it in g["items"]:
                L = lambda **kw: tuple(sorted(dict(study=STUDY, **kw).items()))
                exp[("fieldwatch_item_valid", L(item=it["code"], dimension=dim, segment=seg))] = it["valid_n"]
                for c in it["distribution"]:  # empty when suppressed
                    exp[("fieldwatch_answers",
                         L(item=it["code"], value=c["value"], dimension=dim, segment=seg))] = c["count"]
                if by is None:
                    for kind, n in it["missing"].items():
                        exp[("fieldwatch_item_missing", L(item=it["code"], kind=kind))] = n
                    exp[("fieldwatch_item_excluded", L(item=it["code"]))] = it["excluded"]
            if by is None:
                for form, n in g["interviews_by_form"]:
                    exp[("fieldwatch_interviews", tuple(sorted(dict(study=STUDY, form=form).items())))] = n
    d = lambda kind: ("fieldwatch_duplicates", tuple(sorted(dict(study=STUDY, kind=kind).items())))
    exp[d("respondent")] = report["duplicate_respondents"]
    for q in report.get("quotas", []):
        for cell in q["cells"]:
            labels = dict(study=STUDY, quota=q["name"], cell=",".join(cell["values"]))
            exp[("fieldwatch_quota_achieved_interviews", tuple(sorted(labels.items())))] = cell["achieved"]
    return exp, report


def compare(exp, live, retries):
    exp = dict(exp)
    exp[("fieldwatch_duplicates", tuple(sorted(dict(study=STUDY, kind="retry").items())))] = retries
    bad = [(k, v, live.get(k, 0)) for k, v in exp.items() if live.get(k, 0) != v]
    for (name, labels), want, got in bad[:15]:
        log(f"  MISMATCH {name}{dict(labels)}: offline {want}, live {got}")
    return not bad, len(exp)


def quotas_match(a, report, timeout=60):
    """The instance's quotas JSON, once complete, equals the offline report's."""
    end = time.time() + timeout
    got = None
    while time.time() < end:
        _, text = http(f"http://127.0.0.1:{a.port}/api/v1/studies/{STUDY}/quotas")
        v = json.loads(text)
        got = v["quotas"]
        if v.get("complete") is True and got == report.get("quotas", []):
            return True
        time.sleep(0.5)
    log(f"  MISMATCH quotas: offline {report.get('quotas')}, live {got}")
    return False


def run_scenario(name, binary, data, n, seed, workdir):
    rng = random.Random(seed)
    wd = os.path.join(workdir, name)
    os.makedirs(wd)
    if name == "three":
        planted_file = os.path.join(wd, "interviews-planted.jsonl")
        planted = studywide.plant_copies(data, planted_file, max(10, n // 2000), rng)
        c = Cluster(binary, wd, name)
        t0 = time.time()
        ok, summary = studywide.run_three(c, log, subprocess.run, binary, planted_file, wd, rng, planted)
        for pr in list(PROCS):
            pr.stop(signal.SIGTERM, timeout=20)
        PROCS.clear()
        log(f"{name}: {'PASS' if ok else 'FAIL'}: {summary}, {time.time() - t0:.0f}s")
        return ok
    exp, report = expected(binary, data, wd)
    c = Cluster(binary, wd, name)
    a1 = c.start_aggregator("agg1")
    sub = c.submit(data)
    t0 = time.time()
    resubmits = 0
    if name == "kill":
        for i in range(5):
            time.sleep(rng.uniform(1.0, 4.0))
            log(f"kill: SIGKILL aggregator ({i + 1}/5) at {time.time() - t0:.1f}s")
            a1.send(signal.SIGKILL)
            a1.p.wait()
            c.restart(a1)
    elif name == "scale":
        time.sleep(rng.uniform(2.0, 4.0))
        log("scale: second aggregator joins")
        a2 = c.start_aggregator("agg2")
        time.sleep(rng.uniform(3.0, 6.0))
        log("scale: third aggregator joins")
        c.start_aggregator("agg3")
        time.sleep(rng.uniform(3.0, 6.0))
        log("scale: second aggregator leaves (SIGTERM)")
        a2.stop()
        time.sleep(rng.uniform(2.0, 4.0))
        log("scale: first aggregator leaves (SIGKILL), a fourth joins")
        a1.send(signal.SIGKILL)
        a1.p.wait()
        c.start_aggregator("agg4")
    elif name == "broker":
        time.sleep(rng.uniform(3.0, 6.0))
        log("broker: stopping the broker process")
        c.broker.stop(signal.SIGTERM)
        time.sleep(rng.uniform(2.0, 5.0))
        log("broker: starting it again on the same port and data")
        c.broker.start()
        wait_port(c.broker_port)
    sub.p.wait()
    if sub.p.returncode != 0:
        raise RuntimeError(f"submit exited {sub.p.returncode}; see {wd}/submit.log")
    if name == "twice":
        log("twice: submitting the same file again")
        sub = c.submit(data)
        sub.p.wait()
        if sub.p.returncode != 0:
            raise RuntimeError(f"second submit exited {sub.p.returncode}")
        resubmits = n
    total = sum(v for (m, l), v in exp.items() if m == "fieldwatch_interviews")
    live = c.wait_counted(total, retries=resubmits)
    # Retries: resubmitted ids, plus records ingest published twice when an ack
    # was lost (broker scenario) - counted once, never in results.
    retries = int(sum(v for (m, l), v in live.items()
                      if m == "fieldwatch_duplicates" and ("kind", "retry") in l))
    ok, series = compare(exp, live, retries if name == "broker" else resubmits)
    if name == "kill":
        ok = quotas_match(a1, report) and ok
    if name == "broker" and retries:
        log(f"broker: {retries} records were published twice after lost acks and counted once")
    elapsed = time.time() - t0
    for pr in list(PROCS):
        pr.stop(signal.SIGTERM, timeout=20)
    PROCS.clear()
    log(f"{name}: {'PASS' if ok else 'FAIL'}: {series} series compared exactly, {total} interviews, "
        f"{retries} retries, {elapsed:.0f}s")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--only", action="append")
    ap.add_argument("--workdir", default=tempfile.gettempdir(),
                    help="where the run's temporary directory is made")
    ap.add_argument("--keep", action="store_true", help="keep the run's directory (data, logs)")
    args = ap.parse_args()
    # SIGTERM (CI's timeout, a user's kill) unwinds like an exception, so the
    # finally below still stops the processes and removes the directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_dir = tempfile.mkdtemp(prefix="fw-faults-", dir=args.workdir)
    try:
        return run_all(args, run_dir)
    finally:
        cleanup()
        if args.keep:
            log(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def show_logs(wd, lines=20):
    """The tail of every process log of a failed scenario, before its directory goes."""
    for name in sorted(os.listdir(wd)):
        if name.endswith(".log"):
            with open(os.path.join(wd, name), "rb") as f:
                tail = f.read().decode(errors="replace").splitlines()[-lines:]
            log(f"--- {name} (last {len(tail)} lines)")
            for line in tail:
                print(f"    {line}", flush=True)


def run_all(args, run_dir):
    binary = os.path.abspath(args.bin)
    log(f"seed {args.seed}, {args.records} interviews, in {run_dir}")
    data = os.path.join(run_dir, f"interviews-{args.records}-{args.seed}.jsonl")
    with open(data, "wb") as f:
        subprocess.run([binary, "generate", "--count", str(args.records), "--seed", str(args.seed)],
                       stdout=f, check=True)
    passed = failed = 0
    for name in args.only or ["kill", "scale", "broker", "twice", "three"]:
        try:
            ok = run_scenario(name, binary, data, args.records, args.seed, run_dir)
        except Exception as e:  # a scenario that cannot finish is a failure
            log(f"{name}: FAIL: {e}")
            ok = False
        finally:
            cleanup()
            PROCS.clear()
        wd = os.path.join(run_dir, name)
        if not ok and os.path.isdir(wd):
            show_logs(wd)
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)  # the next scenario needs the room
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
