"""The benchmark rows through Google's official Python client (google-cloud-bigquery-storage):
BigQueryWriteClient over an insecure channel, AppendRowsStream on the table's _default stream,
proto2 rows built from the same 12-column schema and the same values as bqsink's benchmark
(bqsink_testkit::rows::typed_row). Prints one JSON line with what it did.

    python python_peer.py --grpc HOST:PORT [--rows N] [--batch-size B] [--inflight K]
                          [--project P --dataset D --table T]
"""

import argparse
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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=1_000)
    p.add_argument("--inflight", type=int, default=10, help="requests awaiting an answer before waiting")
    p.add_argument("--project", default="bench")
    p.add_argument("--dataset", default="bench")
    p.add_argument("--table", default="rows")
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
    pending = deque()
    requests = 0
    row_bytes = 0
    i = 0
    while i < a.rows:
        n = min(a.batch_size, a.rows - i)
        rows = [make_row(Row, j) for j in range(i, i + n)]
        row_bytes += sum(len(r) for r in rows)
        i += n
        # write_stream on every request: legal, and what bqemulator needs.
        request = types.AppendRowsRequest(
            write_stream=stream_name,
            proto_rows=types.AppendRowsRequest.ProtoData(rows=types.ProtoRows(serialized_rows=rows)),
        )
        pending.append(stream.send(request))
        requests += 1
        while len(pending) >= a.inflight:
            pending.popleft().result()
    while pending:
        pending.popleft().result()
    stream.close()
    wall_s = time.perf_counter() - writing
    print(
        json.dumps(
            {
                "rows": a.rows,
                "rows_written": a.rows,
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
