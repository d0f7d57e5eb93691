#!/usr/bin/env bash
# KV store vs etcd 3.4, side by side: durable puts and gets at 1, 16 and 64 connections (wrk, kv.lua).
# Both fsync before answering (Trellis: SQLite WAL synchronous=FULL; etcd: its WAL). Servers on CPU 0, wrk on CPU 1.
# STORE=etcd runs the registry on that same etcd (--store etcd): Trellis's KV API on top of etcd vs etcd itself.
source "$(dirname "$0")/common.sh"

start_etcd
STORE_ARGS=(--data-dir "$WORK/reg")
[ "${STORE:-sqlite}" = etcd ] && STORE_ARGS=(--store etcd --etcd-endpoints 127.0.0.1:12379)
taskset -c 0 "$BIN" registry --http-addr 127.0.0.1:18500 "${STORE_ARGS[@]}" --log-level error > /dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf 127.0.0.1:18500/v1/status/leader >/dev/null && break; sleep 0.1; done

run() { # target op connections
  local url=http://127.0.0.1:18500; [ "$1" = etcd ] && url=http://127.0.0.1:12379
  taskset -c 1 wrk -t1 -c"$3" -d"$DURATION" --latency -s benchmarks/kv.lua "$url" -- "$1" "$2" |
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%9.0f/s p50 %-8s p99 %-8s%s", rps, p50, p99, (bad ? " non-2xx " bad : "")}'
}

printf "%-4s %-5s %-42s %-42s %s\n" op conns trellis etcd ratio
for op in put get; do
  for c in 1 16 64; do
    T=$(run trellis $op $c); E=$(run etcd $op $c)
    printf "%-4s %-5s %-42s %-42s %.2f\n" $op $c "$T" "$E" "$(awk -v t="${T%%/s*}" -v e="${E%%/s*}" 'BEGIN {print t / e}')"
  done
done
