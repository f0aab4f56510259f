#!/usr/bin/env python3
"""A rejection with 500 field violations reaches a standard grpcio client as
INVALID_ARGUMENT (not RESOURCE_EXHAUSTED from an oversize trailer), with the
response's metadata under the clients' 8 KiB soft limit (above it grpcio
refuses responses at random), the listed violations bounded and the total in
the message and ErrorInfo.

Usage: many_violations.py --server HOST:PORT (run by tests/python/test_client.sh).
Prints one `ok: ...` or `FAIL: ...` line per check; exits non-zero on a failure.
"""

import argparse
import base64
import sys
import uuid
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from submit_example import load_stubs  # noqa: E402


# gRPC core clients refuse responses whose metadata is above this soft limit
# at random (always above 16 KiB): a status must stay under it to arrive.
SOFT_LIMIT = 8 * 1024
# Headers grpcio does not hand to the application: `:status: 200`,
# `content-type: application/grpc`, `grpc-status: 3`, each counted as
# name + value + 32 bytes.
HIDDEN = (7 + 3 + 32) + (12 + 16 + 32) + (11 + 1 + 32)


def metadata_size(err):
    """The size gRPC counts for a response's metadata: for each header, its
    name, its value (base64 for `-bin`, as sent) and 32 bytes."""
    size = HIDDEN + len("grpc-message") + len((err.details() or "").encode()) + 32
    for key, value in list(err.initial_metadata() or ()) + list(err.trailing_metadata() or ()):
        if isinstance(value, bytes):
            value = base64.b64encode(value).rstrip(b"=")
        else:
            value = value.encode()
        size += len(key) + len(value) + 32
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    args = ap.parse_args()
    pb, pb_grpc = load_stubs()
    sub = pb.Submission(study="le-trafficking", form="investigator",
                        respondent_id=str(uuid.uuid4()), submission_id=str(uuid.uuid4()))
    for i in range(500):
        # 500 unknown item ids of 64 characters each: ~58 KB of violations unbounded.
        sub.answers[f"x{i:063d}"].integer = 1
    failures = 0

    def check(what, ok):
        nonlocal failures
        print(("ok: " if ok else "FAIL: ") + what)
        failures += 0 if ok else 1

    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.IngestServiceStub(channel)
        try:
            stub.Submit(pb.SubmitRequest(submission=sub), timeout=60)
            check("the submission is rejected", False)
            return 1
        except grpc.RpcError as err:
            check(f"500 violations arrive as INVALID_ARGUMENT (got {err.code().name})",
                  err.code() == grpc.StatusCode.INVALID_ARGUMENT)
            check("the message gives the total", "500 problems" in (err.details() or ""))
            size = metadata_size(err)
            check(f"the response's metadata is under the {SOFT_LIMIT}-byte soft limit (got {size})",
                  size < SOFT_LIMIT)
            status = rpc_status.from_call(err)
            listed, total = 0, None
            for detail in status.details if status else []:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    listed = len(bad.field_violations)
                elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    total = info.metadata.get("violations")
            check(f"between 1 and 50 violations are listed (got {listed})", 1 <= listed <= 50)
            check(f"ErrorInfo carries the total (got {total})", total == "500")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
