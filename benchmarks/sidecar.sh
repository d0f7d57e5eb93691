#!/usr/bin/env bash
# Sidecar data plane vs nginx and haproxy as reverse proxies, side by side in one run.
# Upstream: one nginx (1 worker) serving a 12-byte body on two ports (two instances).
# Targets: direct (no proxy), nginx proxy (1 worker, upstream keepalive), haproxy (1 thread,
# http-reuse always), the sidecar's outbound listener (round robin over the two instances).
# Proxies and upstream on CPU 0, wrk (1 thread) on CPU 1; access logs off everywhere.
# Rounds alternate targets (A B C D × ROUNDS); medians are reported. With reactor-relay built
# beside the trellis binary, a fifth target relays bytes on the sidecar's event loop without any
# HTTP, as a floor. BASELINE_BIN=path/to/another/trellis adds its sidecar as the target
# "baseline" (same registry, same upstreams), so two builds compare in one run.
source "$(dirname "$0")/common.sh"
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-"50 1000"}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HZ=$(getconf CLK_TCK)

nginx_conf upstream "
  server { listen 127.0.0.1:18081; listen 127.0.0.1:18082; location / { return 200 \"hello world\n\"; } }"
taskset -c 0 nginx -c "$WORK/upstream.conf" & UP_PID=$!; PIDS+=("$UP_PID")

nginx_conf proxy "
  upstream web { server 127.0.0.1:18081; server 127.0.0.1:18082; keepalive 1024; }
  server { listen 127.0.0.1:18090;
    location / { proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
taskset -c 0 nginx -c "$WORK/proxy.conf" & NGINX_PID=$!; PIDS+=("$NGINX_PID")

cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend web
  bind 127.0.0.1:18091
  default_backend web
backend web
  balance roundrobin
  server a 127.0.0.1:18081
  server b 127.0.0.1:18082
CFG
taskset -c 0 haproxy -db -f "$WORK/haproxy.cfg" & HAPROXY_PID=$!; PIDS+=("$HAPROXY_PID")

# The registry only serves discovery; it sits idle on CPU 1 during the runs.
taskset -c 1 "$BIN" registry --http-addr 127.0.0.1:18500 --data-dir "$WORK/reg" --log-level error > /dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do curl -sf 127.0.0.1:18500/v1/status/leader >/dev/null && break; sleep 0.1; done
for port in 18081 18082; do
  curl -sf -X PUT 127.0.0.1:18500/v1/agent/service/register -d "{\"Name\":\"web\",\"ID\":\"web-$port\",\"Address\":\"127.0.0.1\",\"Port\":$port}"
done
taskset -c 0 "$BIN" sidecar --service bench --port 18093 --local-port 18081 --upstream web:18092 \
  --registry 127.0.0.1:18500 --access-log off --log-level error > /dev/null 2>&1 &
SIDECAR_PID=$!; PIDS+=("$SIDECAR_PID")
for _ in $(seq 100); do curl -sf 127.0.0.1:18092/ >/dev/null && break; sleep 0.1; done

declare -A PORT=([direct]=18081 [nginx]=18090 [haproxy]=18091 [sidecar]=18092)
declare -A PID=([direct]=$UP_PID [nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [sidecar]=$SIDECAR_PID)
TARGETS="direct nginx haproxy sidecar"

if [ -n "${BASELINE_BIN:-}" ]; then
  taskset -c 0 "$BASELINE_BIN" sidecar --service bench-baseline --port 18096 --admin-port 18097 --local-port 18081 \
    --upstream web:18095 --registry 127.0.0.1:18500 --access-log off --log-level error > /dev/null 2>&1 &
  PORT[baseline]=18095; PID[baseline]=$!; PIDS+=("$!"); TARGETS+=" baseline"
  for _ in $(seq 100); do curl -sf 127.0.0.1:18095/ >/dev/null && break; sleep 0.1; done
fi

# Baseline, when built beside the trellis binary (`swift build -c release --product reactor-relay`):
# the sidecar's event loop relaying bytes per connection, no HTTP, i.e. what the loop alone costs.
RELAY_BIN=${RELAY_BIN:-$(dirname "$BIN")/reactor-relay}
if [ -x "$RELAY_BIN" ]; then
  taskset -c 0 "$RELAY_BIN" 18094 18081 18082 & PIDS+=("$!")
  PORT[relay]=18094; PID[relay]=$!; TARGETS+=" relay"
  sleep 0.5
fi

# One run: prints "req/s p50 p99 cpu_us_per_request user_us_per_request rss_MiB" (CPU and RSS of
# the proxy, or of the upstream for direct).
run() {
  local target=$1 conns=$2 pid=${PID[$1]}
  local before after user_before user_after out requests
  before=$(cpu_ticks "$pid"); user_before=$(user_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$target]}/")
  after=$(cpu_ticks "$pid"); user_after=$(user_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errors" ] && echo "  ($target: $errors)" >&2
  per_request() { echo "$1 $2 $HZ $requests" | awk '{printf "%.1f", ($2 - $1) / $3 * 1e6 / $4}'; }
  echo "$(echo "$out" | wrk_rps) $(per_request "$before" "$after") $(per_request "$user_before" "$user_after") $(( $(rss_kib "$pid") / 1024 ))"
}
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# Latency as wrk prints it (123.45us, 1.23ms) in milliseconds.
ms() { awk '{v = $1; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}; printf "%.3f\n", v}'; }

# RSS (MiB) of a target's process while a client holds 1,000 idle keep-alive connections to it.
idle_rss() {
  python3 - "${PORT[$1]}" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
held = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    held.append(s)
print("ready", flush=True)
time.sleep(4)
PY
  local holder=$!
  sleep 3
  echo "$(( $(rss_kib "${PID[$1]}") / 1024 ))"
  wait "$holder"
}

# Before any load: the processes as started.
echo "== RSS as started: idle, then with 1,000 idle keep-alive connections (MiB)"
for target in nginx haproxy sidecar; do
  idle=$(( $(rss_kib "${PID[$target]}") / 1024 ))
  printf "%-8s %s %s\n" "$target" "$idle" "$(idle_rss "$target" | tail -1)"
done

for conns in $CONNECTIONS; do
  echo "== $conns connections, $DURATION per run, $ROUNDS rounds"
  declare -A RESULTS=()
  for round in $(seq "$ROUNDS"); do
    for target in $TARGETS; do
      RESULTS[$target]+="$(run "$target" "$conns")"$'\n'
    done
  done
  printf "%-8s %10s %9s %9s %12s %11s %8s\n" target "req/s" "p50 ms" "p99 ms" "CPU µs/req" "of it user" "RSS MiB"
  for target in $TARGETS; do
    rows=$(echo -n "${RESULTS[$target]}")
    rps=$(echo "$rows" | awk '{print $1}' | median)
    p50=$(echo "$rows" | awk '{print $2}' | ms | median)
    p99=$(echo "$rows" | awk '{print $3}' | ms | median)
    cpu=$(echo "$rows" | awk '{print $4}' | median)
    user=$(echo "$rows" | awk '{print $5}' | median)
    rss=$(echo "$rows" | awk '{print $6}' | sort -n | tail -1)
    printf "%-8s %10s %9s %9s %12s %11s %8s\n" "$target" "$rps" "$p50" "$p99" "$cpu" "$user" "$rss"
    eval "RPS_$target=$rps CPU_$target=$cpu"
  done
  echo "sidecar/nginx req/s: $(echo "$RPS_sidecar $RPS_nginx" | awk '{printf "%.2f", $1 / $2}')   sidecar/haproxy: $(echo "$RPS_sidecar $RPS_haproxy" | awk '{printf "%.2f", $1 / $2}')"
  if [ -n "${BASELINE_BIN:-}" ]; then
    echo "sidecar/baseline req/s: $(echo "$RPS_sidecar $RPS_baseline" | awk '{printf "%.3f", $1 / $2}')   CPU per request: $(echo "$CPU_sidecar $CPU_baseline" | awk '{printf "%.3f", $1 / $2}')"
  fi
  unset RESULTS
done

echo "== RSS with 1,000 idle keep-alive connections after the loaded runs (MiB)"
for target in nginx haproxy sidecar; do
  printf "%-8s %s\n" "$target" "$(idle_rss "$target" | tail -1)"
done
