"""The benchmark rows through Google's official Python client (google-cloud-bigquery-storage):
BigQueryWriteClient over an insecure channel, AppendRowsStream on the table's _default stream,
proto2 rows built from the same 12-column schema and the same values as bqsink's benchmark
(bqsink_testkit::rows::typed_row). With --file, the rows are read from a 12-column NDJSON file
instead, the way a user of this client would: json.loads per line, each column set on the proto
message (TIMESTAMP and DATE converted from their ISO strings, the JSON column dumped back to
text). Prints one JSON line with what it did.

    python python_peer.py --grpc HOST:PORT [--rows N | --file PATH] [--batch-size B]
                          [--inflight K] [--project P --dataset D --table T]
"""

import argparse
import datetime
import itertools
import json
import sys
import time
from collections import deque

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types, writer
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import BigQueryWriteGrpcTransport
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
# (column, proto type, label) in the order and with the types bqsink encodes them.
COLUMNS = [
    ("id", F.TYPE_INT64, F.LABEL_REQUIRED),
    ("score", F.TYPE_DOUBLE, F.LABEL_OPTIONAL),
    ("ok", F.TYPE_BOOL, F.LABEL_OPTIONAL),
    ("event", F.TYPE_STRING, F.LABEL_OPTIONAL),
    ("user_id", F.TYPE_STRING, F.LABEL_OPTIONAL),
    ("page", F.TYPE_STRING, F.LABEL_OPTIONAL),
    ("agent", F.TYPE_STRING, F.LABEL_OPTIONAL),
    ("at", F.TYPE_INT64, F.LABEL_OPTIONAL),  # TIMESTAMP: µs since the epoch
    ("day", F.TYPE_INT32, F.LABEL_OPTIONAL),  # DATE: days since the epoch
    ("amount", F.TYPE_STRING, F.LABEL_OPTIONAL),  # NUMERIC as a decimal string
    ("props", F.TYPE_STRING, F.LABEL_OPTIONAL),  # JSON as text
    ("tags", F.TYPE_STRING, F.LABEL_REPEATED),
]


def row_descriptor() -> descriptor_pb2.DescriptorProto:
    d = descriptor_pb2.DescriptorProto(name="Row")
    for number, (name, typ, label) in enumerate(COLUMNS, start=1):
        d.field.add(name=name, number=number, type=typ, label=label)
    return d


def row_class(d: descriptor_pb2.DescriptorProto):
    f = descriptor_pb2.FileDescriptorProto(name="bench_row.proto", package="bench", syntax="proto2")
    f.message_type.add().CopyFrom(d)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Row"))


def make_row(Row, i: int) -> bytes:
    r = Row()
    r.id = i
    r.score = i * 0.5
    r.ok = i % 3 == 0
    r.event = "page_view"
    r.user_id = f"user-{i % 1000}"
    r.page = "/pricing"
    r.agent = "Mozilla/5.0 (X11; Linux x86_64)"
    r.at = 1_700_000_000_000_000 + i
    r.day = 19_700
    r.amount = "1234.56"
    r.props = '{"plan":"pro"}'
    r.tags.extend(("a", "b"))
    return r.SerializeToString()


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
MICROSECOND = datetime.timedelta(microseconds=1)
# Columns copied as they are: numbers, booleans, strings.
PLAIN = ("id", "score", "ok", "event", "user_id", "page", "agent", "amount")


def file_rows(Row, path: str):
    """Serialized rows of an NDJSON file, one per non-empty line."""
    with open(path, "rb", buffering=1 << 20) as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            r = Row()
            for name in PLAIN:
                v = d.get(name)
                if v is not None:
                    setattr(r, name, v)
            v = d.get("at")
            if v is not None:
                r.at = (datetime.datetime.fromisoformat(v) - EPOCH) // MICROSECOND
            v = d.get("day")
            if v is not None:
                r.day = datetime.date.fromisoformat(v).toordinal() - EPOCH_ORDINAL
            v = d.get("props")
            if v is not None:
                r.props = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            v = d.get("tags")
            if v:
                r.tags.extend(v)
            yield r.SerializeToString()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--inflight", type=int, default=10, help="requests awaiting an answer before waiting")
    p.add_argument("--project", default="bench")
    p.add_argument("--dataset", default="bench")
    p.add_argument("--table", default="rows")
    p.add_argument("--file", help="12-column NDJSON file to load instead of generated rows")
    a = p.parse_args()

    started = time.perf_counter()
    channel = grpc.insecure_channel(
        a.grpc, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    )
    transport = BigQueryWriteGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    client = BigQueryWriteClient(transport=transport)
    stream_name = f"projects/{a.project}/datasets/{a.dataset}/tables/{a.table}/streams/_default"
    descriptor = row_descriptor()
    Row = row_class(descriptor)
    template = types.AppendRowsRequest(
        write_stream=stream_name,
        proto_rows=types.AppendRowsRequest.ProtoData(writer_schema=types.ProtoSchema(proto_descriptor=descriptor)),
    )
    stream = writer.AppendRowsStream(client, template)
    setup_s = time.perf_counter() - started

    writing = time.perf_counter()
    if a.file:
        source = file_rows(Row, a.file)
    else:
        source = (make_row(Row, j) for j in range(a.rows))
    pending = deque()
    requests = 0
    row_bytes = 0
    rows_acked = 0

    def settle(future, n: int) -> int:
        response = future.result()
        if response.row_errors:
            raise RuntimeError(f"rows refused: {list(response.row_errors)[:3]}")
        return n

    i = 0
    while True:
        rows = list(itertools.islice(source, a.batch_size))
        if not rows:
            break
        row_bytes += sum(len(r) for r in rows)
        i += len(rows)
        # write_stream on every request: legal, and what bqemulator needs.
        request = types.AppendRowsRequest(
            write_stream=stream_name,
            proto_rows=types.AppendRowsRequest.ProtoData(rows=types.ProtoRows(serialized_rows=rows)),
        )
        pending.append((stream.send(request), len(rows)))
        requests += 1
        while len(pending) >= a.inflight:
            rows_acked += settle(*pending.popleft())
    while pending:
        rows_acked += settle(*pending.popleft())
    stream.close()
    wall_s = time.perf_counter() - writing
    if rows_acked != i:
        raise RuntimeError(f"{rows_acked} of {i} rows acknowledged")
    print(
        json.dumps(
            {
                "rows": i,
                "rows_written": i,
                "rows_acked": rows_acked,
                "requests": requests,
                "bytes_written": row_bytes,
                "batch_size": a.batch_size,
                "setup_s": setup_s,
                "wall_s": wall_s,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
