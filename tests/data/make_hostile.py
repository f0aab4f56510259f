#!/usr/bin/env python3
"""Hostile but valid interviews of the demo study, as JSONL on stdout.

Every free field gets a random string (within the size limits of ingest
validation, so that all are accepted): respondent and submission ids,
interviewer id, the `region` attribute value, an extra attribute of a random
name, and every text item. Random strings mix printable ASCII, quotes,
backslashes, braces, newlines, non-ASCII letters, emoji and strings made to
look like Prometheus exposition text or like declared values (`West`,
`west `). The service must count them under `other` or under no label at all:
the number of metric series must not grow (tests/promtool_check.sh).

Everything else is copied from tests/data/seed-121.jsonl, so the interviews
are accepted and raise no quality flag the seed does not raise:

- a text item is filled only if the template answered it or the instrument
  gives it no relevance condition (else it could be flagged
  `answered_when_hidden`);
- one count item that no relevance condition refers to gets a value within
  its bounds that differs from every other copy of the same template, so no
  two interviews have the same answers (else `possible_duplicate`).

Item ids, kinds, bounds and conditions come from the instrument YAML
(needs PyYAML). Usage:

    make_hostile.py [--count 3000] [--seed 1] > hostile.jsonl
"""

import argparse
import json
import random
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INSTRUMENT = ROOT / "config" / "instruments" / "le-trafficking.yaml"
SEED_DATA = ROOT / "tests" / "data" / "seed-121.jsonl"

# Strings aimed at the exposition format and at label look-alikes.
CRAFTED = [
    'west"} 1\nfieldwatch_injected_total{a="b',
    "West",
    "west ",
    " southeast",
    "other",
    "unknown",
    "all",
    "le-trafficking",
    "\\",
    '"',
    "\n",
    "{}",
    "q6",
    "région-nord",
    "北东",
    "🚓🚓",
    "x" * 128,
]
ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " _-.:/\\\"'{}[]=,;#\n\t"
    "éüßøñçà北东南西🙂🚓\u200b\u202e"
)


def random_string(rng, max_len):
    """A random non-empty string of at most `max_len` characters."""
    if rng.random() < 0.1:
        s = rng.choice(CRAFTED)
        if len(s) <= max_len:
            return s
    n = rng.randint(1, max_len)
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def load_forms(path):
    """Per form id: its text items and the count items usable to vary answers."""
    doc = yaml.safe_load(path.read_text())
    forms = {}
    for form in doc["forms"]:
        items = form["items"]
        ids = {it["id"] for it in items}
        referenced = set()
        for it in items:
            if it.get("relevant"):
                referenced |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", it["relevant"])) & ids
        forms[form["id"]] = {
            # text item id -> whether it has a relevance condition
            "text": {it["id"]: bool(it.get("relevant")) for it in items if it["kind"] == "text"},
            # count items no condition looks at: (id, min, max)
            "vary": [
                (it["id"], it.get("min", 0), it["max"])
                for it in items
                if it["kind"] == "count" and it["id"] not in referenced and "max" in it
            ],
        }
    return forms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=3000, help="interviews to write")
    ap.add_argument("--seed", type=int, default=1, help="random seed")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    forms = load_forms(INSTRUMENT)

    # Templates: seed interviews with a varying count item answered.
    templates = []
    for line in SEED_DATA.read_text().splitlines():
        t = json.loads(line)
        answered = [v for v in forms[t["form"]]["vary"] if isinstance(t["answers"].get(v[0]), int)]
        if answered:
            templates.append((t, answered[0]))
    if not templates:
        sys.exit("no seed interview has a count item to vary")

    used_ids = set()

    def unique_id(max_len):
        while True:
            s = random_string(rng, max_len)
            if s not in used_ids:
                used_ids.add(s)
                return s

    # Per template: the values its varying item has taken (the seed's included).
    taken = {i: {t["answers"][v[0]]} for i, (t, v) in enumerate(templates)}
    out = sys.stdout
    for n in range(args.count):
        i = n % len(templates)
        template, (vary_id, lo, hi) = templates[i]
        free = [x for x in range(lo, hi + 1) if x not in taken[i]]
        if not free:
            sys.exit(f"too many copies for the range of {vary_id}: lower --count")
        value = rng.choice(free)
        taken[i].add(value)

        sub = json.loads(json.dumps(template))  # deep copy
        sub["respondent_id"] = unique_id(256)
        sub["submission_id"] = unique_id(128)
        sub["interviewer"] = random_string(rng, 128)
        extra_key = random_string(rng, 64)
        while extra_key == "region":
            extra_key = random_string(rng, 64)
        sub["attributes"] = {
            "region": random_string(rng, 128),
            # not a dimension: ignored
            extra_key: random_string(rng, 128),
        }
        answers = sub["answers"]
        for item, has_condition in forms[sub["form"]]["text"].items():
            if isinstance(answers.get(item), str) or not has_condition:
                answers[item] = random_string(rng, 400)
        answers[vary_id] = value
        out.write(json.dumps(sub, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
