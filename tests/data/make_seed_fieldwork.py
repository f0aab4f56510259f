#!/usr/bin/env python3
"""Writes tests/data/seed-fieldwork.jsonl: the case dispositions of the seed
study's fieldwork, to be read together with seed-121.jsonl.

The seed report: "In total, 292 individuals were contacted for the survey.
Of these contacts, 82 were ineligible [...]. There were a total of 121
completed surveys and 89 non-responses (11 refusals and 78 non-contacts).
Thus, the valid sample size was 210 individuals and the response rate for
the telephone surveys was 58 percent." A non-contact "did not respond after
five telephone and/or e-mail contacts".

Final dispositions: the 121 interviews of seed-121.jsonl are the completes
(their case id is the respondent id); 11 refusals, 78 non-contacts and 82
not eligible are written here. Cases move between dispositions on the way,
so the file also exercises "only the latest counts": some respondents were
non-contacts before their interview, some refusals and non-contacts were
tried several times, and some ineligible cases were of unknown eligibility
first. RR1 = 121 / 210 = 57.6%.

Deterministic: run `python3 tests/data/make_seed_fieldwork.py` to rebuild.
"""

import datetime as dt
import json
import pathlib
import random

HERE = pathlib.Path(__file__).parent
STUDY = "le-trafficking"
FORMS = ["investigator", "line_officer", "victim_witness"]
REGIONS = ["northeast", "mid_atlantic", "southeast", "midwest", "southwest", "west", "northwest"]
INTERVIEWERS = ["int01", "int02", "int03", "int04", "int05", "int06"]
DAY0 = dt.datetime(2005, 3, 7, 13, 0, tzinfo=dt.timezone.utc)


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def line(case, disposition, time, interviewer, form, region):
    return {"kind": "disposition", "study": STUDY, "case_id": case, "disposition": disposition,
            "time": stamp(time), "interviewer": interviewer, "form": form,
            "attributes": {"region": region}}


def attempts(rng, case, final, n, interviewer, form, region, earlier=("non_contact",)):
    """n - 1 earlier attempts then the final disposition, a few days apart."""
    t = DAY0 + dt.timedelta(days=rng.randrange(0, 150), minutes=rng.randrange(0, 480))
    out = []
    for _ in range(n - 1):
        out.append(line(case, rng.choice(earlier), t, interviewer, form, region))
        t += dt.timedelta(days=rng.randrange(1, 6), minutes=rng.randrange(0, 240))
    out.append(line(case, final, t, interviewer, form, region))
    return out


def main():
    rng = random.Random(2005)
    interviews = [json.loads(l) for l in (HERE / "seed-121.jsonl").read_text().splitlines() if l.strip()]
    assert len(interviews) == 121
    out = []
    # Respondents: a third were not reached at first; their non-contacts
    # come before the interview, which makes them completes.
    for s in interviews[::3]:
        start = dt.datetime.strptime(s["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        for k in range(rng.randrange(1, 4), 0, -1):
            t = start - dt.timedelta(days=2 * k, minutes=rng.randrange(0, 120))
            out.append(line(s["respondent_id"], "non_contact", t, s.get("interviewer"), s["form"],
                            s["attributes"]["region"]))
    # 11 refusals (AAPOR 2.11 or the name), some after non-contacts.
    for i in range(1, 12):
        final = "2.11" if i % 3 == 0 else "refusal"
        out += attempts(rng, f"LE-R{i:03d}", final, rng.randrange(1, 4), rng.choice(INTERVIEWERS),
                        rng.choice(FORMS), rng.choice(REGIONS))
    # 78 non-contacts: five contact attempts each.
    for i in range(1, 79):
        out += attempts(rng, f"LE-N{i:03d}", "NC", 5, rng.choice(INTERVIEWERS), rng.choice(FORMS),
                        rng.choice(REGIONS))
    # 82 not eligible ("no familiarity or experience working on trafficking
    # cases"); some were of unknown eligibility until reached.
    for i in range(1, 83):
        final = "4.70" if i % 4 == 0 else "not_eligible"
        out += attempts(rng, f"LE-E{i:03d}", final, rng.choice([1, 1, 2]), rng.choice(INTERVIEWERS),
                        rng.choice(FORMS), rng.choice(REGIONS), earlier=("unknown_other", "non_contact"))
    # Arrival order is not time order: a front-end uploads call records in batches.
    rng.shuffle(out)
    path = HERE / "seed-fieldwork.jsonl"
    path.write_text("".join(json.dumps(o, separators=(",", ":")) + "\n" for o in out))
    print(f"wrote {len(out)} dispositions to {path}")


if __name__ == "__main__":
    main()
