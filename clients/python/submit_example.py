#!/usr/bin/env python3
"""Submit interviews to fieldwatch from Python: a front-end in ~100 lines.

Generates the gRPC stubs from proto/fieldwatch/v1/fieldwatch.proto at run time
(grpcio-tools, into a temporary directory), then against a running service:

1. submits one valid interview of the demo study `le-trafficking` (the first
   line of tests/data/seed-121.jsonl under new ids) and prints OK; with
   --http, reads the live toplines with `?after=READ_TOKEN` (read-your-writes:
   the answer includes this interview, no sleeping) and prints the count;
2. submits a broken one (text for the scale item q6, an unknown item q99, an
   unknown missing code for q40) and prints each field violation of the
   `google.rpc.BadRequest` that the INVALID_ARGUMENT status carries in its
   `grpc-status-details-bin` trailer.

Needs: pip install grpcio grpcio-tools grpcio-status
Usage: submit_example.py --server 127.0.0.1:50051 [--token TOKEN] [--http http://127.0.0.1:9464]
Exit status 0 when the valid interview was stored and the broken one rejected.
"""

import argparse
import atexit
import importlib
import importlib.resources
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
SEED = REPO / "tests" / "data" / "seed-121.jsonl"


def load_stubs():
    """Compiles the proto into a temp dir and imports (messages, service stubs)."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="fieldwatch-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    # grpc_tools ships the well-known types (google/protobuf/timestamp.proto).
    wkt = importlib.resources.files("grpc_tools") / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO_DIR / "fieldwatch" / "v1" / "fieldwatch.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed with status {rc}")
    sys.path.insert(0, out)
    pb = importlib.import_module("fieldwatch.v1.fieldwatch_pb2")
    pb_grpc = importlib.import_module("fieldwatch.v1.fieldwatch_pb2_grpc")
    return pb, pb_grpc


def to_answer(pb, value):
    """One JSONL answer (docs/submissions.md) as a fieldwatch.v1.Answer."""
    if value is None:
        return pb.Answer()  # blank
    if isinstance(value, bool):  # before int: bool is an int in Python
        return pb.Answer(other_json=json.dumps(value))
    if isinstance(value, int):
        return pb.Answer(integer=value)
    if isinstance(value, float):
        return pb.Answer(number=value)
    if isinstance(value, str):
        return pb.Answer(text=value)
    if isinstance(value, list):
        return pb.Answer(choices=pb.StringList(values=value))
    if isinstance(value, dict) and set(value) == {"missing"}:
        return pb.Answer(missing=value["missing"])
    if isinstance(value, dict) and set(value) == {"ranked"}:
        return pb.Answer(ranked=pb.RankedChoices(ranks=value["ranked"]))
    return pb.Answer(other_json=json.dumps(value))


def to_submission(pb, line):
    """One JSONL interview as a fieldwatch.v1.Submission."""
    sub = pb.Submission(
        study=line["study"],
        form=line["form"],
        respondent_id=line["respondent_id"],
        submission_id=line["submission_id"],
        attributes=line.get("attributes", {}),
    )
    for key in ("started_at", "completed_at", "interviewer"):
        if line.get(key) is not None:
            setattr(sub, key, line[key])
    for item, value in line.get("answers", {}).items():
        sub.answers[item].CopyFrom(to_answer(pb, value))
    return sub


def print_violations(err):
    """Prints the BadRequest field violations of a failed call, if any."""
    status = rpc_status.from_call(err)  # decodes grpc-status-details-bin
    if status is None:
        return []
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for v in bad.field_violations:
                print(f"  {v.field}: {v.reason}: {v.description}")
                found.append((v.field, v.reason))
    return found


def read_your_writes(http, study, token):
    """The live toplines once they include the record of `token`; None on 503."""
    url = f"{http.rstrip('/')}/api/v1/studies/{study}/toplines?after={token}"
    try:
        # The server waits (up to http.read_wait_ms) until its view includes
        # the record, then answers; 503 means "not yet", worth a retry.
        with urllib.request.urlopen(url, timeout=60) as r:
            return json.load(r)
    except urllib.error.HTTPError as err:
        if err.code == 503:
            return None
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="127.0.0.1:50051", help="ingest gRPC address host:port")
    ap.add_argument("--token", default=os.environ.get("FIELDWATCH_TOKEN"),
                    help="bearer token, if the server requires one (or FIELDWATCH_TOKEN)")
    ap.add_argument("--http", help="JSON API base URL (http://127.0.0.1:9464): read your write back")
    args = ap.parse_args()

    pb, pb_grpc = load_stubs()
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    run = uuid.uuid4().hex[:8]

    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.IngestServiceStub(channel)

        # 1. A valid interview: the seed's first line under new ids.
        with SEED.open() as f:
            line = json.loads(f.readline())
        line["respondent_id"] = f"PY-{run}-1"
        # Never derived from the respondent id (docs/submissions.md).
        line["submission_id"] = str(uuid.uuid4())
        try:
            reply = stub.Submit(pb.SubmitRequest(submission=to_submission(pb, line)),
                                metadata=metadata, timeout=30)
        except grpc.RpcError as err:
            print(f"valid interview: {err.code().name}: {err.details()}")
            print_violations(err)
            return 1
        print(f"valid interview {reply.submission_id}: OK "
              f"(stored, received_at {reply.received_at.ToJsonString()}, read_token {reply.read_token})")
        if args.http:
            toplines = read_your_writes(args.http, line["study"], reply.read_token)
            if toplines is None:
                print("live toplines: the view does not include the interview yet (503)")
                return 1
            print(f"live toplines include it: {toplines['groups'][0]['interviews']} interviews")

        # 2. A broken one: text for a 1-5 scale, an item the form lacks, and
        #    a missing code the study does not define.
        line["respondent_id"] = f"PY-{run}-2"
        line["submission_id"] = str(uuid.uuid4())
        line["answers"]["q6"] = "very knowledgeable"
        line["answers"]["q99"] = 3
        line["answers"]["q40"] = {"missing": "maybe"}
        try:
            stub.Submit(pb.SubmitRequest(submission=to_submission(pb, line)),
                        metadata=metadata, timeout=30)
        except grpc.RpcError as err:
            print(f"broken interview {line['submission_id']}: {err.code().name}: {err.details()}")
            found = print_violations(err)
            return 0 if err.code() == grpc.StatusCode.INVALID_ARGUMENT and found else 1
        print(f"broken interview {line['submission_id']}: unexpectedly accepted")
        return 1


if __name__ == "__main__":
    sys.exit(main())
