"""The three-aggregator scenario of the fault suite (issue 10): study-wide
answers on every instance, exact possible-duplicate flags across partitions,
and `_total` series that never go down.

`fieldwatch broker`, one `fieldwatch ingest` and three `fieldwatch aggregate`
processes in one group; the generated interviews plus planted copies of some
of them (identical answers under new respondent and submission ids, so most
land in another partition than their original, and each copy comes well
after its original in the file and therefore in receipt time), and planted
reuses of submission ids (an interview's submission id under a new
respondent, also well after its original: refused at ingest as
`submission_id_taken`, whatever partition either lands in, as offline); one
aggregator SIGKILLed and restarted at once mid-stream. Every instance's
`/metrics` is scraped every 0.5 s through the run, and no `_total` series may
go down within one process's life (a restarted process starts again from
zero, which Prometheus reads as a reset and is not a decrease). At the end,
on every instance: the toplines (overall and by each declared dimension),
fieldwork, quotas and flags JSON (speeder flags aside: judged per partition
live, see `comparable_flags`) equal `fieldwatch report --format json` on the
same file, and the possible-duplicate flags are exactly the planted
copies (plus any identical answers the generator made by chance, which the
offline report flags too).
"""

import json
import os
import re
import signal
import threading
import time
import urllib.request

STUDY = "le-trafficking"
DIMENSIONS = ("position", "region", "interviewer")
# Fields of a flag that differ by nature: where the record was read (partition
# and offset live, line number offline) and when ingest received it.
PLACE = ("source_partition", "source_offset", "received_at")


def get(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read().decode())


def plant_copies(src, dst, copies, rng):
    """Writes `src` to `dst` with `copies` planted copies and as many
    planted reuses of a submission id, each of an interview from the first
    half inserted a quarter of the file later. A copy has the original's
    answers under new respondent and submission ids; a reuse keeps the
    submission id under a new respondent. Returns the copies' submission ids."""
    with open(src) as f:
        lines = f.read().splitlines()
    candidates = [i for i, l in enumerate(lines[: len(lines) // 2]) if '"kind"' not in l]
    picks = sorted(rng.sample(candidates, min(2 * copies, len(candidates))))
    copied, reused = picks[0::2], picks[1::2]
    inserts = []
    for i in copied:
        v = json.loads(lines[i])
        v["respondent_id"] = f"planted-r{i}"
        v["submission_id"] = f"planted-s{i}"
        inserts.append((i + len(lines) // 4, json.dumps(v)))
    for i in reused:
        v = json.loads(lines[i])
        v["respondent_id"] = f"reused-r{i}"
        inserts.append((i + len(lines) // 4, json.dumps(v)))
    for at, line in sorted(inserts, reverse=True):
        lines.insert(at, line)
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n")
    return {f"planted-s{i}" for i in copied}


class Scraper(threading.Thread):
    """Scrapes every running aggregator every 0.5 s and records each `_total`
    series that went down within one process's life."""

    def __init__(self, aggregators):
        super().__init__(daemon=True)
        self.aggregators = aggregators
        self.last = {}
        self.decreases = []
        self.scrapes = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.5):
            for name, a in list(self.aggregators.items()):
                if a.p.poll() is not None:
                    continue
                life = (name, a.p.pid)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/metrics", timeout=5) as r:
                        text = r.read().decode()
                except OSError:
                    continue
                self.scrapes += 1
                for line in text.splitlines():
                    m = re.match(r"^(\w+_total)(\{.*\})? (\S+)$", line)
                    if not m:
                        continue
                    key = (life, m.group(1), m.group(2) or "")
                    v = float(m.group(3))
                    if key in self.last and v < self.last[key]:
                        self.decreases.append((name, m.group(1), m.group(2), self.last[key], v))
                    self.last[key] = v


def report(run, binary, path, workdir, env, by=None):
    args = [binary, "report", "--input", path, "--format", "json"] + (["--by", by] if by else [])
    return json.loads(run(args, check=True, capture_output=True, cwd=workdir, env=env).stdout)


def all_flags(port):
    """Every flag an instance lists, page by page."""
    out, page = [], 1
    while True:
        v = get(port, f"/api/v1/studies/{STUDY}/flags?per_page=500&page={page}")
        out.extend(v["flags"])
        if not v["flags"] or len(out) >= v["total"]:
            return v, out
        page += 1


def comparable_flags(flags):
    """The flags without where they were read, and without `speeder`: live,
    an interview is judged against the earlier ones of its form in its own
    partition, offline against the earlier lines of the whole file (by
    design, docs/fieldwork.md), so the speeder flags differ by nature."""
    out = []
    for f in flags:
        f = {k: v for k, v in f.items() if k not in PLACE}
        f["checks"] = [c for c in f["checks"] if c["check"] != "speeder"]
        if f["checks"]:
            out.append(f)
    return sorted(out, key=lambda f: (f["submission_id"], json.dumps(f, sort_keys=True)))


def differences(port, offline, by_dim):
    """What differs between one instance's answers and the offline report;
    empty when every answer is complete and equal."""
    bad = []
    top = get(port, f"/api/v1/studies/{STUDY}/toplines")
    if top.get("complete") is not True:
        return ["toplines: not complete"]
    for k in ("study", "by", "min_cell_size", "groups", "retries", "duplicate_respondents",
              "possible_duplicates"):
        if top.get(k) != offline.get(k):
            bad.append(f"toplines.{k}")
    for dim, want in by_dim.items():
        got = get(port, f"/api/v1/studies/{STUDY}/toplines?by={dim}")
        if got.get("groups") != want["groups"]:
            bad.append(f"toplines?by={dim}")
    # The API's fieldwork document is the report's plus how complete and
    # fresh the view is (`complete`, `caught_up`, `freshness`).
    fw = get(port, f"/api/v1/studies/{STUDY}/fieldwork")
    want = offline["fieldwork"]
    differ = [k for k in sorted(set(fw) | set(want))
              if k not in ("complete", "caught_up", "freshness") and fw.get(k) != want.get(k)]
    if differ:
        bad.append(f"fieldwork: {differ}")
    q = get(port, f"/api/v1/studies/{STUDY}/quotas")
    if q["quotas"] != offline.get("quotas", []):
        bad.append("quotas")
    _, flags = all_flags(port)
    live, want = comparable_flags(flags), comparable_flags(offline["flags"]["flags"])
    if live != want:
        ids = lambda fs: {f["submission_id"] for f in fs}
        bad.append(f"flags: {len(live)} live, {len(want)} offline (speeder aside); only live "
                   f"{sorted(ids(live) - ids(want))[:5]}, only offline {sorted(ids(want) - ids(live))[:5]}")
    return bad


def possible_duplicates(flags):
    return {f["submission_id"] for f in flags if any(c["check"] == "possible_duplicate" for c in f["checks"])}


def run_three(c, log, run, binary, data, workdir, rng, planted):
    """Runs the scenario on cluster `c` (broker and ingest started); returns
    (ok, summary)."""
    env = c.env
    offline = report(run, binary, data, workdir, env)
    by_dim = {d: report(run, binary, data, workdir, env, by=d) for d in DIMENSIONS}
    offline_dups = possible_duplicates(offline["flags"]["flags"])
    missing = planted - offline_dups
    if missing:
        raise RuntimeError(f"the offline report does not flag {len(missing)} planted copies")
    aggs = [c.start_aggregator(f"agg{i}") for i in (1, 2, 3)]
    scraper = Scraper(c.aggregators)
    scraper.start()
    t0 = time.time()
    sub = c.submit(data)
    time.sleep(rng.uniform(2.0, 5.0))
    log(f"three: SIGKILL agg2 at {time.time() - t0:.1f}s, restarted at once")
    aggs[1].send(signal.SIGKILL)
    aggs[1].p.wait()
    c.restart(aggs[1])
    sub.p.wait()
    # `submit` exits 1 when it printed rejected lines: here the reuses, each
    # refused by ingest as the report refuses it.
    taken = offline["submission_ids_taken"]
    with open(os.path.join(sub.workdir, f"{sub.name}.log")) as f:
        refused = f.read().count("(submission_id_taken)")
    if taken == 0 or refused != taken or sub.p.returncode != (1 if taken else 0):
        raise RuntimeError(f"submit exited {sub.p.returncode}, {refused} ids refused as taken, "
                           f"offline {taken}")
    total = sum(g["interviews"] for g in offline["groups"])
    c.wait_counted(total)
    # Every instance answers for the whole study once its view has caught up
    # (another owner's partitions come from snapshots every 2 s, late
    # possible-duplicate flags within a view interval or two after that).
    end = time.time() + 180
    bad = {}
    while time.time() < end:
        bad = {}
        for a in aggs:
            try:
                d = differences(a.port, offline, by_dim)
            except OSError as e:
                d = [f"unreachable: {e}"]
            if d:
                bad[a.name] = d
        if not bad:
            break
        time.sleep(1.0)
    scraper.stop.set()
    scraper.join()
    ok = True
    for name, d in sorted(bad.items()):
        log(f"  MISMATCH on {name}: {'; '.join(d)}")
        ok = False
    if not bad:
        for a in aggs:
            _, flags = all_flags(a.port)
            live = possible_duplicates(flags)
            if live != offline_dups:
                log(f"  MISMATCH on {a.name}: possible duplicates {len(live)} live, {len(offline_dups)} offline")
                ok = False
    for name, metric, labels, before, after in scraper.decreases[:15]:
        log(f"  DECREASE on {name}: {metric}{labels or ''} {before} -> {after}")
    ok = ok and not scraper.decreases
    summary = (f"{len(aggs)} instances, {len(planted)} planted copies, {taken} reused ids refused "
               f"({len(offline_dups)} possible duplicates in all), {scraper.scrapes} scrapes, "
               f"{len(scraper.decreases)} decreases")
    return ok, summary
