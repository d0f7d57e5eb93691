#!/usr/bin/env bash
# The gateway with JWT validation (ES256, 1,000 distinct valid tokens picked at random per request)
# against nginx proxying the same route without any authentication, side by side in one run.
# Upstream: one nginx worker serving a 12-byte body. Part 1: one worker each, proxies and upstream
# on CPU 0, wrk (1 thread) on CPU 1. Part 2: two workers each (the gateway's --workers 2, nginx's
# worker_processes 2), nothing pinned. Rounds alternate the targets; medians are reported.
source "$(dirname "$0")/common.sh"
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

nginx_conf upstream "server { listen 127.0.0.1:18081; location / { return 200 \"hello world\n\"; } }"
taskset -c 0 nginx -c "$WORK/upstream.conf" & PIDS+=("$!")

proxy_conf() { # $1 name, $2 workers, $3 port
  cat > "$WORK/$1.conf" <<NGINX
worker_processes $2; daemon off; master_process $( [ "$2" -gt 1 ] && echo on || echo off ); pid $WORK/$1.pid; error_log $WORK/$1-error.log;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  upstream web { server 127.0.0.1:18081; keepalive 1024; }
  server { listen 127.0.0.1:$3; location / { proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
}
proxy_conf nginx1 1 18090
taskset -c 0 nginx -c "$WORK/nginx1.conf" & NGINX1_PID=$!; PIDS+=("$NGINX1_PID")
proxy_conf nginx2 2 18190
nginx -c "$WORK/nginx2.conf" & NGINX2_PID=$!; PIDS+=("$NGINX2_PID")
sleep 0.5; for worker in $(pgrep -P "$NGINX2_PID"); do PIDS+=("$worker"); done  # its workers outlive a killed master

taskset -c 1 "$BIN" registry --http-addr 127.0.0.1:18500 --data-dir "$WORK/reg" --log-level error > /dev/null 2>&1 & PIDS+=("$!")
for _ in $(seq 100); do curl -sf 127.0.0.1:18500/v1/status/leader >/dev/null && break; sleep 0.1; done
curl -sf -X PUT 127.0.0.1:18500/v1/agent/service/register -d '{"Name":"web","ID":"web-1","Address":"127.0.0.1","Port":18081}'

# An ES256 key, its public half in the gateway's policy, and 1,000 tokens (PyJWT) for wrk.
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ec.pem" 2>/dev/null
openssl ec -in "$WORK/ec.pem" -pubout -out "$WORK/ec.pub.pem" 2>/dev/null
/usr/bin/python3 - "$WORK/ec.pem" > "$WORK/tokens.txt" <<'PY'
import sys, time, jwt
key = open(sys.argv[1]).read()
for i in range(1000):
    print(jwt.encode({"sub": f"user-{i}", "roles": ["buyer"], "exp": int(time.time()) + 3600}, key, algorithm="ES256"))
PY
cat > "$WORK/gateway.yaml" <<YAML
jwt: {main: {keys: [{alg: ES256, public_key_file: $WORK/ec.pub.pem}]}}
rules: [{name: all, backendRefs: [{name: web}], auth: {jwt: main, roles: [buyer]}}]
YAML
cat > "$WORK/tokens.lua" <<LUA
local tokens = {}
for line in io.lines("$WORK/tokens.txt") do tokens[#tokens + 1] = "Bearer " .. line end
request = function() return wrk.format("GET", "/", {["Authorization"] = tokens[math.random(#tokens)]}) end
LUA

start_gateway() { # $1 workers, $2 port, $3 admin port, then the taskset prefix if any
  local workers=$1 port=$2 admin=$3; shift 3
  "$@" "$BIN" gateway --name "bench$workers" --port "$port" --admin-port "$admin" --address 127.0.0.1 --workers "$workers" \
    --policy "$WORK/gateway.yaml" --registry 127.0.0.1:18500 --access-log off --log-level error > /dev/null 2>&1 &
  PIDS+=("$!"); GATEWAY_PID=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.1; done
}
start_gateway 1 18092 18093 taskset -c 0; GATEWAY1_PID=$GATEWAY_PID
start_gateway 2 18192 18193; GATEWAY2_PID=$GATEWAY_PID
token=$(head -1 "$WORK/tokens.txt")
[ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:18092/)" = 401 ] || { echo "the gateway does not ask for a token"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" 127.0.0.1:18092/)" = 200 ] || { echo "the gateway refuses a valid token"; exit 1; }

run() { # $1 port, $2 pid, $3 wrk prefix: prints "req/s p50 p99 cpu_us_per_request"
  local port=$1 pid=$2; shift 2
  local before after out requests
  before=$(cpu_ticks "$pid")
  out=$("$@" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/tokens.lua" "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errors" ] && echo "  (port $port: $errors)" >&2
  echo "$(echo "$out" | wrk_rps) $(echo "$before $after $(getconf CLK_TCK) $requests" | awk '{printf "%.1f", ($2 - $1) / $3 * 1e6 / $4}')"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ms() { awk '{v = $1; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}; printf "%.3f\n", v}'; }

report() { # $1 title, then pairs of "name port pid" via globals
  printf "%-10s %10s %9s %9s %12s\n" target "req/s" "p50 ms" "p99 ms" "CPU µs/req"
  for target in nginx gateway; do
    rows=$(echo -n "${RESULTS[$target]}")
    printf "%-10s %10s %9s %9s %12s\n" "$target" "$(echo "$rows" | awk '{print $1}' | median)" "$(echo "$rows" | awk '{print $2}' | ms | median)" \
      "$(echo "$rows" | awk '{print $3}' | ms | median)" "$(echo "$rows" | awk '{print $4}' | median)"
  done
  local g n gp np
  g=$(echo -n "${RESULTS[gateway]}" | awk '{print $1}' | median); n=$(echo -n "${RESULTS[nginx]}" | awk '{print $1}' | median)
  gp=$(echo -n "${RESULTS[gateway]}" | awk '{print $3}' | ms | median); np=$(echo -n "${RESULTS[nginx]}" | awk '{print $3}' | ms | median)
  echo "gateway/nginx req/s: $(echo "$g $n" | awk '{printf "%.2f", $1 / $2}')   p99 gateway - nginx: $(echo "$gp $np" | awk '{printf "%+.2f ms", $1 - $2}')"
}

compare() { # $1 title, $2 nginx port, $3 nginx pid, $4 gateway port, $5 gateway pid, then the wrk prefix if any
  local title=$1 nginx_port=$2 nginx_pid=$3 gateway_port=$4 gateway_pid=$5; shift 5
  echo "== $title; $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds"
  RESULTS=()
  for round in $(seq "$ROUNDS"); do
    RESULTS[nginx]+="$(run "$nginx_port" "$nginx_pid" "$@")"$'\n'
    RESULTS[gateway]+="$(run "$gateway_port" "$gateway_pid" "$@")"$'\n'
  done
  report
}
declare -A RESULTS=()
compare "1 worker each, proxies on CPU 0, wrk on CPU 1" 18090 "$NGINX1_PID" 18092 "$GATEWAY1_PID" taskset -c 1
compare "2 workers each, unpinned" 18190 "$NGINX2_PID" 18192 "$GATEWAY2_PID"
echo "(CPU of nginx with 2 workers counts its master only; compare req/s there.)"
