#!/usr/bin/env bash
# Registry benchmarks, each side by side with its peer in the same run (see README.md here).
#   1. catalog reads: /v1/health/service/:name?passing (10 instances) vs nginx serving the same bytes
#   2. durable registrations vs etcd 3.4 durable puts (JSON gateway, kv.lua), 64 connections
#   3. blocking-query fan-out: 10,000 watchers, one change
#   4. 10,000 instances with an HTTP check every 10 s: registry CPU and RSS
#   5. ACLs default-deny with a 50-rule token vs the same binary without ACLs: reads and registrations
# Servers are pinned to CPU 0, load generators to CPU 1. Arguments pick sections (default: all).
# BASELINE_BIN=path/to/another/trellis adds that binary to sections 1 and 2, side by side in the
# same rounds, with the ratio of this build to it.
source "$(dirname "$0")/common.sh"
SECTIONS=" ${*:-1 2 3 4 5} "
want() { [[ "$SECTIONS" == *" $1 "* ]]; }

start_registry() { # [binary] [port] [more registry flags]
  local bin=${1:-$BIN} port=${2:-18500}
  rm -rf "$WORK/reg-$port"
  taskset -c 0 "$bin" registry --http-addr 127.0.0.1:"$port" --data-dir "$WORK/reg-$port" --node bench --log-level error "${@:3}" \
    > "$WORK/registry-$port.out" 2>&1 &
  REG_PID=$!; PIDS+=("$REG_PID")
  for _ in $(seq 100); do curl -sf 127.0.0.1:"$port"/v1/status/leader >/dev/null && return; sleep 0.1; done
  echo "registry did not start"; exit 1
}
stop_registry() { kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; }
ratio() { awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN {printf "%.3f", a / b}'; } # of the first fields
cpu_ratio() { awk -v a="${1##* }" -v b="${2##* }" 'BEGIN {sub("us/req", "", a); sub("us/req", "", b); printf "%.3f", a / b}'; } # of the wrk_cpu figures
# Runs wrk (the rest of the arguments) against the registry $REG_PID; prints "req/s p50 p99 cpu-us-per-request".
wrk_cpu() {
  local before after out
  before=$(cpu_ticks "$REG_PID")
  out=$(taskset -c 1 wrk "$@" | wrk_rps)
  after=$(cpu_ticks "$REG_PID")
  echo "$out $(echo "$out $before $after $(getconf CLK_TCK) ${DURATION%s}" |
    awk '{printf "%.1fus/req", ($5 - $4) / $6 * 1e6 / ($1 * $7)}')"
}

seed_web() { # port [token]
  for i in $(seq 1 10); do
    curl -sf -X PUT -H "X-Consul-Token: ${2:-}" 127.0.0.1:"$1"/v1/agent/service/register \
      -d "{\"Name\":\"web\",\"ID\":\"web-$i\",\"Port\":$((9000 + i)),\"Tags\":[\"v1\"],\"Meta\":{\"version\":\"1.2.$i\"},\"Check\":{\"TTL\":\"1h\",\"Status\":\"passing\"}}"
  done
}

if want 1; then
echo "== 1. catalog reads: health/service?passing, 10 instances, 50 connections, $DURATION"
start_registry; seed_web 18500; READ_PIDS=("$REG_PID")
if [ -n "${BASELINE_BIN:-}" ]; then start_registry "$BASELINE_BIN" 18510; seed_web 18510; READ_PIDS+=("$REG_PID"); fi
mkdir -p "$WORK/www"
curl -sf "127.0.0.1:18500/v1/health/service/web?passing" -o "$WORK/www/health.json"
echo "response: $(wc -c < "$WORK/www/health.json") bytes"
start_nginx 0 "root $WORK/www; location / { default_type application/json; }"
for round in 1 2 3; do
  T=$(taskset -c 1 wrk -t1 -c50 -d"$DURATION" --latency "http://127.0.0.1:18500/v1/health/service/web?passing" | wrk_rps)
  N=$(taskset -c 1 wrk -t1 -c50 -d"$DURATION" --latency "http://127.0.0.1:18080/health.json" | wrk_rps)
  LINE="round $round  trellis: $T   nginx: $N   ratio: $(ratio "$T" "$N")"
  if [ -n "${BASELINE_BIN:-}" ]; then
    B=$(taskset -c 1 wrk -t1 -c50 -d"$DURATION" --latency "http://127.0.0.1:18510/v1/health/service/web?passing" | wrk_rps)
    LINE+="   baseline: $B   trellis/baseline: $(ratio "$T" "$B")"
  fi
  echo "$LINE"
done
kill "$NGINX_PID"; for p in "${READ_PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
fi

ACL_SECRET=11111111-2222-3333-4444-555555555555
ACL_FLAGS=(--acl-enabled --acl-default-policy deny --acl-initial-management-token "$ACL_SECRET")
# A policy of 50 rules (47 key prefixes, the bench and web services, the nodes) and a token carrying it.
make_acl_token() { # port
  local rules="" i
  for i in $(seq 1 47); do rules+="key_prefix \\\"app/team-$i/\\\" { policy = \\\"read\\\" }\\n"; done
  rules+="service_prefix \\\"bench\\\" { policy = \\\"write\\\" }\\nservice \\\"web\\\" { policy = \\\"write\\\" }\\nnode_prefix \\\"\\\" { policy = \\\"read\\\" }"
  curl -sf -X PUT -H "X-Consul-Token: $ACL_SECRET" 127.0.0.1:"$1"/v1/acl/policy -d "{\"Name\":\"bench\",\"Rules\":\"$rules\"}" >/dev/null
  curl -sf -X PUT -H "X-Consul-Token: $ACL_SECRET" 127.0.0.1:"$1"/v1/acl/token -d '{"Policies":[{"Name":"bench"}]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretID"])'
}

if want 2; then
echo "== 2. durable writes at 64 connections, $DURATION"
for round in 1 2 3; do
  start_registry
  T=$(wrk_cpu -t1 -c64 -d"$DURATION" --latency -s benchmarks/register.lua "http://127.0.0.1:18500")
  stop_registry
  start_etcd
  E=$(taskset -c 1 wrk -t1 -c64 -d"$DURATION" --latency -s benchmarks/kv.lua "http://127.0.0.1:12379" -- etcd put | wrk_rps)
  kill "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true
  LINE="round $round  trellis registrations: $T   etcd puts: $E   ratio: $(ratio "$T" "$E")"
  if [ -n "${BASELINE_BIN:-}" ]; then
    start_registry "$BASELINE_BIN" 18510
    B=$(wrk_cpu -t1 -c64 -d"$DURATION" --latency -s benchmarks/register.lua "http://127.0.0.1:18510")
    stop_registry
    LINE+="   baseline: $B   trellis/baseline: $(ratio "$T" "$B")"
  fi
  echo "$LINE"
done
fi

if want 3; then
echo "== 3. blocking-query fan-out: 10,000 watchers"
start_registry "$BIN" 18500 --http-max-conns-per-client 0  # all 10,000 come from 127.0.0.1
taskset -c 1 python3 benchmarks/fanout.py 127.0.0.1:18500 "$REG_PID" 10000
stop_registry
fi

if want 4; then
echo "== 4. 10,000 instances with an HTTP check every 10s"
start_registry
start_nginx 1 'location /health { return 200 "ok"; }'
python3 - <<PY
import concurrent.futures, urllib.request
def register(i):
    body = ('{"Name":"svc-%d","ID":"svc-%d","Port":18080,"Check":{"HTTP":"http://127.0.0.1:18080/health",'
            '"Interval":"10s","Timeout":"2s"}}' % (i % 100, i)).encode()
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:18500/v1/agent/service/register", data=body, method="PUT")).read()
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    list(pool.map(register, range(10000)))
PY
sleep 15  # every check has run at least once
START=$(cpu_ticks "$REG_PID"); sleep 60; END=$(cpu_ticks "$REG_PID")
HZ=$(getconf CLK_TCK)
PASSING=$(curl -sf 127.0.0.1:18500/v1/health/state/passing | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "checks passing: $PASSING   registry CPU: $(echo "$START $END $HZ" | awk '{printf "%.1f%% of one core", ($2 - $1) / $3 / 60 * 100}')   RSS: $(( $(rss_kib "$REG_PID") / 1024 )) MiB"
kill "$NGINX_PID"; stop_registry
fi

if want 5; then
echo "== 5. ACLs default-deny, a token of 50 rules, vs no ACLs: reads (50 connections) and registrations (64), $DURATION"
start_registry "$BIN" 18500; seed_web 18500; PLAIN_PID=$REG_PID
start_registry "$BIN" 18510 "${ACL_FLAGS[@]}"; ACL_PID=$REG_PID
TOKEN=$(make_acl_token 18510); seed_web 18510 "$TOKEN"
# Which side goes first alternates from round to round: the second of two back-to-back runs is
# measured on a machine the first one left warm (and noisy).
read_plain() { P=$(REG_PID=$PLAIN_PID wrk_cpu -t1 -c50 -d"$DURATION" --latency "http://127.0.0.1:18500/v1/health/service/web?passing"); }
read_acl() { A=$(REG_PID=$ACL_PID wrk_cpu -t1 -c50 -d"$DURATION" --latency -H "X-Consul-Token: $TOKEN" "http://127.0.0.1:18510/v1/health/service/web?passing"); }
for round in 1 2 3 4; do
  if (( round % 2 )); then read_plain; read_acl; else read_acl; read_plain; fi
  echo "round $round  reads  no ACLs: $P   ACLs: $A   ACLs/none: $(ratio "$A" "$P")   CPU per read ACLs/none: $(cpu_ratio "$A" "$P")"
done
kill "$PLAIN_PID" "$ACL_PID"; wait "$PLAIN_PID" "$ACL_PID" 2>/dev/null || true
register_plain() {
  start_registry
  P=$(wrk_cpu -t1 -c64 -d"$DURATION" --latency -s benchmarks/register.lua "http://127.0.0.1:18500")
  stop_registry
}
register_acl() {
  start_registry "$BIN" 18500 "${ACL_FLAGS[@]}"
  TOKEN=$(make_acl_token 18500)
  A=$(wrk_cpu -t1 -c64 -d"$DURATION" --latency -s benchmarks/register.lua -H "X-Consul-Token: $TOKEN" "http://127.0.0.1:18500")
  stop_registry
}
for round in 1 2 3 4; do
  if (( round % 2 )); then register_plain; register_acl; else register_acl; register_plain; fi
  echo "round $round  registrations  no ACLs: $P   ACLs: $A   ACLs/none: $(ratio "$A" "$P")   CPU per registration ACLs/none: $(cpu_ratio "$A" "$P")"
done
fi
