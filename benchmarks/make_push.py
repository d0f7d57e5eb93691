"""Writes one Loki push (snappy protobuf): 10 streams x 100 lines of 200 bytes, stamped now."""
import sys, time, snappy

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80); n >>= 7
    out.append(n)
    return bytes(out)

def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload

now = time.time_ns()
streams = b""
for s in range(10):
    entries = b""
    for i in range(100):
        line = ('{"level":"info","service":"bench","msg":"request served","path":"/api/items/%03d","trace_id":"%032x","pad":"' % (i, s * 100 + i)).encode()
        line += b"x" * (198 - len(line)) + b'"}'
        stamp = varint(1 << 3) + varint(now // 10**9) + varint(2 << 3) + varint(now % 10**9 + i)
        entries += field(2, field(1, stamp) + field(2, line))
    streams += field(1, field(1, ('{job="bench", stream="%d"}' % s).encode()) + entries)
open(sys.argv[1], "wb").write(snappy.compress(streams))
