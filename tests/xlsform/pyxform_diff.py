#!/usr/bin/env python3
"""Differential test: pyxform (the XLSForm reference implementation) and
fieldwatch over the same workbooks must agree on accept or reject.

Runs over tests/xlsform/cases/*.xlsx and tests/xlsform/seed/*.xlsx. A
`diverge-*` case is a valid XLSForm that fieldwatch refuses on purpose
(repeats, external choice files, comparing the value of a text or date
question, which fieldwatch does not keep; docs/xlsform.md):
for those pyxform must accept and fieldwatch must refuse, so a change on
either side is noticed. Every case is run and printed; none is skipped.
Ends with "N passed, N failed".

    FIELDWATCH_BIN=target/debug/fieldwatch python tests/xlsform/pyxform_diff.py
"""

import glob
import os
import subprocess
import sys
import warnings

from pyxform.xls2xform import convert

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pyxform_accepts(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert(xlsform=path, warnings=[])
        return True, ""
    except Exception as e:  # pyxform raises PyXFormError and friends
        return False, str(e).splitlines()[0] if str(e) else type(e).__name__


def fieldwatch_accepts(binary, path):
    p = subprocess.run([binary, "instrument", "check", path], capture_output=True, text=True)
    return p.returncode == 0, (p.stderr.strip().splitlines() or [""])[0]


def main():
    binary = os.environ.get("FIELDWATCH_BIN", os.path.join(ROOT, "target", "debug", "fieldwatch"))
    files = sorted(glob.glob(os.path.join(ROOT, "tests", "xlsform", "cases", "*.xlsx")))
    files += sorted(glob.glob(os.path.join(ROOT, "tests", "xlsform", "seed", "*.xlsx")))
    passed = failed = 0
    for path in files:
        name = os.path.basename(path)
        px, px_why = pyxform_accepts(path)
        fw, fw_why = fieldwatch_accepts(binary, path)
        if name.startswith("diverge-"):
            ok = px and not fw
            want = "pyxform accepts, fieldwatch refuses (documented)"
        else:
            ok = px == fw
            want = "both " + ("accept" if px else "refuse")
        status = "ok  " if ok else "FAIL"
        print("%s %-32s pyxform %-7s fieldwatch %-7s want %s" % (
            status, name, "accepts" if px else "refuses", "accepts" if fw else "refuses", want))
        if not ok:
            print("     pyxform: %s\n     fieldwatch: %s" % (px_why, fw_why))
        passed += ok
        failed += not ok
    if not files:
        failed += 1
        print("FAIL no workbooks found")
    print("pyxform differential: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
