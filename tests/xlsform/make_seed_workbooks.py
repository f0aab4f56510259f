#!/usr/bin/env python3
"""Writes the seed study's four forms as XLSForm workbooks.

Reads config/instruments/le-trafficking.yaml and writes one workbook per form
to tests/xlsform/seed/ (N-<form>.xlsx, numbered so that sorting keeps the
YAML's form order, which leads in reports). The workbooks must import to an
instrument that reports exactly as the YAML does (tests/xlsform.rs). Output
is byte-for-byte reproducible: fixed document dates and zip entry times.

    python3 tests/xlsform/make_seed_workbooks.py [OUT_DIR]

Needs openpyxl and PyYAML (tests/xlsform/requirements.txt).
"""

import datetime
import io
import os
import re
import sys
import zipfile

import openpyxl
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXED = datetime.datetime(2024, 1, 1)


def xpath(cond, ids):
    """A fieldwatch condition as XLSForm XPath: ids as ${id}, == as =, '' strings."""
    out = []
    for tok in re.findall(r'"[^"]*"|[A-Za-z_][A-Za-z0-9_]*|==|!=|<=|>=|[<>()]|[0-9.]+|\S', cond):
        if tok in ids:
            out.append("${%s}" % tok)
        elif tok == "==":
            out.append("=")
        elif tok.startswith('"'):
            out.append("'%s'" % tok[1:-1])
        else:
            out.append(tok)
    return " ".join(out).replace("( ", "(").replace(" )", ")")


def settings_row(study, form):
    """The settings sheet: XLSForm settings and the study's fieldwatch:: settings."""
    dims = " ".join("%s:%s" % (d["name"], d["source"]) for d in study["dimensions"])
    missing = " ".join("%s=%s" % (m["code"], m["kind"]) for m in study["missing_codes"])
    cols = [
        ("form_id", form["id"]),
        ("form_title", form.get("title", "")),
        ("version", "1"),
        ("fieldwatch::study", study["study"]),
        ("fieldwatch::study_title", study.get("title", "")),
        ("fieldwatch::dimensions", dims),
        ("fieldwatch::missing", missing),
        ("fieldwatch::segments", " ".join("%s=%s" % kv for kv in form.get("segments", {}).items())),
    ]
    for section in ("reporting", "fieldwork"):
        for k, v in study.get(section, {}).items():
            cols.append(("fieldwatch::" + k, v))
    return cols


def form_workbook(study, form):
    wb = openpyxl.Workbook()
    survey = wb.active
    survey.title = "survey"
    header = ["type", "name", "label", "required", "relevant", "constraint",
              "fieldwatch::code", "fieldwatch::scale", "fieldwatch::box_size"]
    survey.append(header)
    # Interview start and end: metadata, not items.
    survey.append(["start", "start"])
    survey.append(["end", "end"])
    choices = wb.create_sheet("choices")
    choices.append(["list_name", "name", "label"])
    ids = {it["id"] for it in form["items"]}
    for it in form["items"]:
        kind = it["kind"]
        ty, constraint, scale, box = "", "", "", ""
        lst = it["id"]
        if kind == "scale":
            ty = "select_one " + lst
            labels = it.get("labels", {})
            for p in range(it["min"], it["max"] + 1):
                # Unlabelled points carry their number as label.
                choices.append([lst, p, labels.get(p, str(p))])
            scale = it.get("direction", "ascending")
            box = it.get("box_size", "")
        elif kind in ("yes_no", "yes_no_na"):
            ty = "select_one " + kind
        elif kind == "single_choice":
            ty = "select_one " + lst
            for o in it["options"]:
                choices.append([lst, o["code"], o.get("label", "")])
        elif kind == "multi_select":
            ty = ("rank " if it.get("ranked") else "select_multiple ") + lst
            for o in it["options"]:
                choices.append([lst, o["code"], o.get("label", "")])
            if it.get("max_picks"):
                constraint = "count-selected(.) <= %d" % it["max_picks"]
        elif kind == "count":
            ty = "integer"
            constraint = ". >= %d and . <= %d" % (it.get("min", 0), it["max"])
        elif kind == "number":
            ty = "decimal"
            parts = []
            if it.get("min") is not None:
                parts.append(". >= %s" % it["min"])
            if it.get("max") is not None:
                parts.append(". <= %s" % it["max"])
            constraint = " and ".join(parts)
        elif kind == "text":
            ty = "text"
        else:
            raise SystemExit("unknown kind " + kind)
        survey.append([
            ty, it["id"], it.get("text", ""), "yes" if it.get("required") else "",
            xpath(it["relevant"], ids) if it.get("relevant") else "",
            constraint, it["code"] if it["code"] != it["id"] else "", scale, box,
        ])
    for name, rows in (("yes_no", [("yes", "Yes"), ("no", "No")]),
                       ("yes_no_na", [("yes", "Yes"), ("no", "No"), ("na", "Not applicable")])):
        for code, label in rows:
            choices.append([name, code, label])
    # Dimension values: a choice list named after each dimension.
    for d in study["dimensions"]:
        for v in d["values"]:
            choices.append([d["name"], v["code"], v.get("label", "")])
    settings = wb.create_sheet("settings")
    cols = settings_row(study, form)
    settings.append([c for c, _ in cols])
    settings.append([v for _, v in cols])
    # The study's quotas, one row per cell; every workbook carries the
    # same sheet (quotas are study-wide and must agree).
    if study.get("quotas"):
        quotas = wb.create_sheet("quotas")
        quotas.append(["quota", "dimensions", "values", "target", "cap"])
        for q in study["quotas"]:
            for c in q["cells"]:
                quotas.append([q["name"], " ".join(q["dimensions"]), " ".join(c["values"]),
                               c["target"], c.get("cap", "")])
    wb.properties.created = FIXED
    wb.properties.modified = FIXED
    return wb


def reproducible(wb):
    """The workbook's bytes with fixed zip entry times."""
    raw = io.BytesIO()
    wb.save(raw)
    src = zipfile.ZipFile(io.BytesIO(raw.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            data = re.sub(rb"<dcterms:(created|modified)([^>]*)>[^<]*<", rb"<dcterms:\1\2>2024-01-01T00:00:00Z<", data)
            z = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            z.compress_type = zipfile.ZIP_DEFLATED
            z.external_attr = 0o644 << 16
            dst.writestr(z, data)
    return out.getvalue()


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "xlsform", "seed")
    with open(os.path.join(ROOT, "config", "instruments", "le-trafficking.yaml")) as f:
        study = yaml.safe_load(f)
    os.makedirs(out_dir, exist_ok=True)
    for n, form in enumerate(study["forms"], 1):
        path = os.path.join(out_dir, "%d-%s.xlsx" % (n, form["id"]))
        with open(path, "wb") as f:
            f.write(reproducible(form_workbook(study, form)))
        print(path)


if __name__ == "__main__":
    main()
