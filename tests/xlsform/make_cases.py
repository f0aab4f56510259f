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
    "diverge-arithmetic": ([H, ["integer", "a", "A", "", "", ""],
                            ["text", "b", "B", "", "${a} + 1 > 2", ""]], CHOICES),
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
                     ["text", "x", "X", "sometimes", "${age} + 1 > 2", ""],
                     ["select_one_from_file towns.csv", "town", "Town", "", "", ""],
                     ["select_one nolist", "y", "Y", "", "", ""]], CHOICES),
}


def workbook(name, survey, choices, setting_rows=None):
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
