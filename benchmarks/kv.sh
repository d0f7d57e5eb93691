#!/usr/bin/env bash
# KV store vs etcd 3.4, side by side: durable puts and gets at 1, 16 and 64 connections (wrk, kv.lua).
# Both fsync before answering (Trellis: SQLite WAL synchronous=FULL; etcd: its WAL). Servers on CPU 0, wrk on CPU 1.
# STORE=etcd runs the registry on that same etcd (--store etcd): Trellis's KV API on top of etcd vs etcd itself.
# BASELINE_BIN=path/to/another/trellis runs that binary too (port 18510, same store kind) and adds
# this build's ratio to it.
source "$(dirname "$0")/common.sh"

start_etcd
STORE_ARGS=(--data-dir "$WORK/reg")
[ "${STORE:-sqlite}" = etcd ] && STORE_ARGS=(--store etcd --etcd-endpoints 127.0.0.1:12379)
taskset -c 0 "$BIN" registry --http-addr 127.0.0.1:18500 "${STORE_ARGS[@]}" --log-level error > /dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf 127.0.0.1:18500/v1/status/leader >/dev/null && break; sleep 0.1; done
if [ -n "${BASELINE_BIN:-}" ]; then
  BASE_ARGS=(--data-dir "$WORK/reg-baseline")
  [ "${STORE:-sqlite}" = etcd ] && BASE_ARGS=(--store etcd --etcd-endpoints 127.0.0.1:12379 --etcd-prefix trellis/baseline/)
  taskset -c 0 "$BASELINE_BIN" registry --http-addr 127.0.0.1:18510 "${BASE_ARGS[@]}" --log-level error > /dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf 127.0.0.1:18510/v1/status/leader >/dev/null && break; sleep 0.1; done
fi

run() { # target op connections
  local url=http://127.0.0.1:18500; [ "$1" = etcd ] && url=http://127.0.0.1:12379
  local api=$1; [ "$1" = baseline ] && url=http://127.0.0.1:18510 && api=trellis
  taskset -c 1 wrk -t1 -c"$3" -d"$DURATION" --latency -s benchmarks/kv.lua "$url" -- "$api" "$2" |
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%9.0f/s p50 %-8s p99 %-8s%s", rps, p50, p99, (bad ? " non-2xx " bad : "")}'
}

per() { awk -v a="${1%%/s*}" -v b="${2%%/s*}" 'BEGIN {printf "%.3f", a / b}'; }
printf "%-4s %-5s %-42s %-42s %-6s %s\n" op conns trellis etcd ratio "${BASELINE_BIN:+baseline, trellis/baseline}"
for op in put get; do
  for c in 1 16 64; do
    T=$(run trellis $op $c); E=$(run etcd $op $c)
    B=""; [ -n "${BASELINE_BIN:-}" ] && B=$(run baseline $op $c)
    printf "%-4s %-5s %-42s %-42s %-6s %s\n" $op $c "$T" "$E" "$(per "$T" "$E")" "${B:+$B $(per "$T" "$B")}"
  done
done
