#!/usr/bin/env python3
"""Writes the small XLSForm test workbooks of tests/xlsform/cases/.

Each case is a workbook that both pyxform (the reference implementation) and
fieldwatch read: `ok-*` cases are valid XLSForms, `bad-*` cases are broken
ones both must refuse, `diverge-*` cases are valid XLSForms that fieldwatch
refuses on purpose (docs/xlsform.md says why), and `broken-many.xlsx` holds
many problems at once for `instrument check`. tests/xlsform/pyxform_diff.py
runs both tools over them. Output is byte-for-byte reproducible.

    python3 tests/xlsform/make_cases.py [OUT_DIR]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_seed_workbooks import ROOT, FIXED, reproducible  # noqa: E402

import openpyxl  # noqa: E402

H = ["type", "name", "label", "required", "relevant", "constraint"]
CHOICES = [["list_name", "name", "label"], ["yn", "yes", "Yes"], ["yn", "no", "No"],
           ["col", "red", "Red"], ["col", "blue", "Blue"], ["col", "dk", "Don't know"]]


def settings(form_id):
    return [["form_id", "form_title"], [form_id, form_id.replace("_", " ")]]


CASES = {
    "ok-minimal": ([H,
                    ["integer", "age", "Age", "yes", "", ". >= 0 and . <= 120"],
                    ["select_one yn", "works", "Do you work?", "yes", "${age} >= 16", ""],
                    ["text", "job", "Job", "", "${works} = 'yes'", ""]], CHOICES),
    "ok-groups-or-other": ([H,
                            ["integer", "age", "Age", "", "", ""],
                            ["begin group", "adult", "Adults", "", "${age} >= 18", ""],
                            ["select_one col or_other", "colour", "Colour", "", "", ""],
                            ["select_multiple col", "colours", "Colours", "", "selected(${colour}, 'red')", "count-selected(.) <= 1"],
                            ["end group", "", "", "", "", ""]], CHOICES),
    "ok-rank-range": ([H + ["parameters"],
                       ["rank col", "order", "Order", "", "", "", ""],
                       ["range", "score", "Score", "", "", "", "start=0 end=10 step=1"],
                       ["decimal", "weight", "Weight", "", "", ". > 0", ""]], CHOICES),
    "ok-metadata": ([H + ["calculation"],
                     ["start", "start", "", "", "", ""], ["end", "end", "", "", "", ""],
                     ["today", "today", "", "", "", ""], ["deviceid", "deviceid", "", "", "", ""],
                     ["note", "hello", "Welcome", "", "", ""], ["date", "born", "Born", "", "", ""],
                     ["geopoint", "where", "Where", "", "", ""],
                     ["calculate", "twice", "", "", "", "", "2 * 2"]], CHOICES),
    "bad-calculate-without-calculation": ([H, ["calculate", "twice", "", "", "", ""]], CHOICES),
    "bad-name": ([H, ["text", "1st name", "First name", "", "", ""]], CHOICES),
    "ok-language": ([["type", "name", "label::English (en)", "label::French (fr)", "REQUIRED"],
                     ["select_one yn", "ok", "OK?", "D'accord ?", "true()"]],
                    [["list_name", "name", "label::English (en)", "label::French (fr)"],
                     ["yn", "yes", "Yes", "Oui"], ["yn", "no", "No", "Non"]]),
    "bad-duplicate-name": ([H, ["text", "a", "A", "", "", ""], ["text", "a", "A again", "", "", ""]], CHOICES),
    "bad-unknown-type": ([H, ["frobnicate", "a", "A", "", "", ""]], CHOICES),
    "bad-missing-list": ([H, ["select_one nolist", "a", "A", "", "", ""]], CHOICES),
    "bad-unclosed-group": ([H, ["begin group", "g", "G", "", "", ""], ["text", "a", "A", "", "", ""]], CHOICES),
    "bad-end-without-begin": ([H, ["text", "a", "A", "", "", ""], ["end group", "", "", "", "", ""]], CHOICES),
    "bad-unknown-reference": ([H, ["text", "a", "A", "", "${nope} = 'x'", ""]], CHOICES),
    "bad-duplicate-choice": ([H, ["select_one yn", "a", "A", "", "", ""]],
                             [["list_name", "name", "label"], ["yn", "yes", "Yes"], ["yn", "yes", "Yes again"]]),
    "bad-no-survey": (None, CHOICES),
    "diverge-repeat": ([H, ["begin repeat", "members", "Members", "", "", ""],
                        ["text", "member", "Name", "", "", ""], ["end repeat", "", "", "", "", ""]], CHOICES),
    "diverge-select-from-file": ([H, ["select_one_from_file towns.csv", "town", "Town", "", "", ""]], CHOICES),
    "diverge-text-compare": ([H, ["date", "born", "Born", "", "", ". <= today()"]], CHOICES),
    "ok-arithmetic-if-today": ([H,
                                ["integer", "a", "A", "", "", ""],
                                ["integer", "b", "B", "", "", ". <= ${a} div 2 + 1"],
                                ["text", "c", "C", "", "${a} + ${b} * 2 > 10 and if(${a} > 1, ${b}, 0) != 3", ""],
                                ["text", "d", "D", "", "-${a} < 0 and ${a} mod 2 = 0", ""],
                                ["text", "e", "E", "", "today() >= date('2024-01-01')", ""]], CHOICES),
    "ok-select-multiple-equals": ([H,
                                   ["select_multiple col", "colours", "Colours", "", "", ""],
                                   ["text", "why_red", "Why only red?", "", "${colours} = 'red'", ""]], CHOICES),
    "ok-hard-constraint": ([H + ["constraint_message", "fieldwatch::constraint_hard"],
                            ["integer", "adults", "Adults", "", "", ". >= 1 and . <= 20", "", ""],
                            ["integer", "workers", "Workers", "", "", ". <= ${adults}", "At most the adults", "yes"]],
                           CHOICES),
    "ok-missing-numbers": ([H + ["fieldwatch::missing_numbers"],
                            ["integer", "age", "Age", "", "", ". >= 0 and . <= 120", ""],
                            ["decimal", "income", "Income", "", "", ". >= 0", "-98 -99"]], CHOICES,
                           [["form_id", "fieldwatch::missing"], ["missing_numbers", "dk=dont_know -98=dont_know -99=refused 999=refused"]]),
    "ok-quotas": ([H, ["integer", "age", "Age", "", "", ""]],
                  CHOICES + [["region", "west", "West"], ["region", "east", "East"]],
                  [["form_id", "fieldwatch::dimensions"], ["quotas", "region:attribute"]],
                  {"quotas": [["quota", "dimensions", "values", "target", "cap"],
                              ["region", "region", "west", 10, 12], ["region", "region", "east", 8, ""]]}),
    # The worked example of docs/xlsform.md.
    "ok-worked-example": (
        [["type", "name", "label", "required", "relevant", "constraint", "fieldwatch::code", "fieldwatch::scale"],
         ["start", "start", "", "", "", "", "", ""],
         ["select_one agree", "q1", "How knowledgeable are you?", "yes", "", "", "knowledge", "ascending"],
         ["select_one yn", "q2", "Do you work on a task force?", "", "", "", "task_force", ""],
         ["integer", "q3", "How many cases?", "", "${q2} = 'yes'", ". >= 0 and . <= 500", "cases", ""],
         ["select_multiple svc or_other", "q4", "Services needed", "", "", "count-selected(.) <= 2", "services", ""]],
        [["list_name", "name", "label"], ["agree", 1, "Not at all"], ["agree", 2, "2"], ["agree", 3, "Very"],
         ["yn", "yes", "Yes"], ["yn", "no", "No"], ["svc", "housing", "Housing"],
         ["svc", "medical", "Medical care"], ["svc", "dk", "Don't know"]],
        [["form_id", "form_title", "fieldwatch::study", "fieldwatch::missing"],
         ["officers", "Officers", "demo", "dk=dont_know rf=refused"]]),
    "broken-many": ([H,
                     ["integer", "age", "Age", "", "", ""],
                     ["text", "age", "Again", "", "", ""],
                     ["begin repeat", "members", "Members", "", "", ""],
                     ["text", "member", "Name", "", "", ""],
                     ["end repeat", "", "", "", "", ""],
                     ["text", "x", "X", "sometimes", "concat(${age}, 'y') = '1y'", ""],
                     ["select_one_from_file towns.csv", "town", "Town", "", "", ""],
                     ["select_one nolist", "y", "Y", "", "", ""]], CHOICES),
}


def workbook(name, survey, choices, setting_rows=None, extra=None):
    wb = openpyxl.Workbook()
    first = wb.active
    if survey is None:
        first.title = "questions"
        first.append(["type", "name", "label"])
    else:
        first.title = "survey"
        for r in survey:
            first.append(r)
    c = wb.create_sheet("choices")
    for r in choices:
        c.append(r)
    s = wb.create_sheet("settings")
    for r in setting_rows or settings(name.replace("-", "_")):
        s.append(r)
    for sheet, rows in (extra or {}).items():
        x = wb.create_sheet(sheet)
        for r in rows:
            x.append(r)
    wb.properties.created = FIXED
    wb.properties.modified = FIXED
    return wb


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "xlsform", "cases")
    os.makedirs(out_dir, exist_ok=True)
    for name, case in CASES.items():
        path = os.path.join(out_dir, name + ".xlsx")
        with open(path, "wb") as f:
            f.write(reproducible(workbook(name, *case)))
        print(path)


if __name__ == "__main__":
    main()
