#!/usr/bin/env bash
# Mutual TLS between two proxies: client → sidecar A → mTLS → sidecar B → upstream, against the same
# chain of two nginx (A with proxy_ssl_certificate and upstream keepalive, B with ssl_verify_client
# on), side by side in one run, with the same leaf certificates and roots (issued by the registry).
# Proxies and upstream on CPU 0, the load generators on CPU 1; access logs off everywhere.
#   1. keep-alive on both sides: req/s, p50, p99 and CPU per request of both proxies, at 50 connections;
#   2. new mutual TLS connections per second to B (`openssl s_time -new`, one GET per connection);
#   3. RSS of B while 1,000 mutual TLS connections to it are open.
source "$(dirname "$0")/common.sh"
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-50}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HZ=$(getconf CLK_TCK)

nginx_conf upstream "
  server { listen 127.0.0.1:18081; location / { return 200 \"hello world\n\"; } }"
taskset -c 0 nginx -c "$WORK/upstream.conf" & UP_PID=$!; PIDS+=("$UP_PID")

# The registry issues the leaves and serves discovery; it sits idle on CPU 1 during the runs.
taskset -c 1 "$BIN" registry --http-addr 127.0.0.1:18500 --data-dir "$WORK/reg" --log-level error > /dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do curl -sf 127.0.0.1:18500/v1/status/leader >/dev/null && break; sleep 0.1; done
leaf() { # writes $WORK/$1.pem and $WORK/$1.key, a leaf of service $1
  curl -sf "127.0.0.1:18500/v1/agent/connect/ca/leaf/$1" | python3 -c "
import json, sys; d = json.load(sys.stdin)
open('$WORK/$1.pem', 'w').write(d['CertPEM']); open('$WORK/$1.key', 'w').write(d['PrivateKeyPEM'])"
}
leaf db; leaf web; leaf bench
curl -sf '127.0.0.1:18500/v1/connect/ca/roots?pem=true' > "$WORK/roots.pem"

taskset -c 0 "$BIN" sidecar --service db --port 18102 --local-port 18081 --mtls strict \
  --registry 127.0.0.1:18500 --access-log off --collector off --log-level error > /dev/null 2>&1 &
SIDECAR_B=$!; PIDS+=("$SIDECAR_B")
taskset -c 0 "$BIN" sidecar --service web --port 18103 --local-port 18081 --upstream db:18101 \
  --registry 127.0.0.1:18500 --access-log off --collector off --log-level error > /dev/null 2>&1 &
SIDECAR_A=$!; PIDS+=("$SIDECAR_A")

nginx_conf nginx-b "
  upstream local { server 127.0.0.1:18081; keepalive 1024; }
  server { listen 127.0.0.1:18112 ssl;
    ssl_certificate $WORK/db.pem; ssl_certificate_key $WORK/db.key;
    ssl_client_certificate $WORK/roots.pem; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls:10m;
    location / { proxy_pass http://local; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx_conf nginx-a "
  upstream db { server 127.0.0.1:18112; keepalive 1024; }
  server { listen 127.0.0.1:18111;
    location / { proxy_pass https://db; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_ssl_certificate $WORK/web.pem; proxy_ssl_certificate_key $WORK/web.key;
      proxy_ssl_trusted_certificate $WORK/roots.pem; proxy_ssl_verify on; proxy_ssl_name db;
      proxy_ssl_session_reuse on; } }"
taskset -c 0 nginx -c "$WORK/nginx-b.conf" & NGINX_B=$!; PIDS+=("$NGINX_B")
taskset -c 0 nginx -c "$WORK/nginx-a.conf" & NGINX_A=$!; PIDS+=("$NGINX_A")

for url in http://127.0.0.1:18101/ http://127.0.0.1:18111/; do
  for _ in $(seq 200); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
  curl -sf "$url" > /dev/null || { echo "no answer through $url"; exit 1; }
done

declare -A PORT=([sidecar]=18101 [nginx]=18111)
declare -A BPORT=([sidecar]=18102 [nginx]=18112)
declare -A PID_A=([sidecar]=$SIDECAR_A [nginx]=$NGINX_A)
declare -A PID_B=([sidecar]=$SIDECAR_B [nginx]=$NGINX_B)

ticks() { echo $(( $(cpu_ticks "${PID_A[$1]}") + $(cpu_ticks "${PID_B[$1]}") )); }
# One keep-alive run through a chain: "req/s p50 p99 cpu_us_per_request" (CPU of both proxies).
run() {
  local before after out requests
  before=$(ticks "$1")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$1]}/")
  after=$(ticks "$1")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errors" ] && echo "  ($1: $errors)" >&2
  echo "$(echo "$out" | wrk_rps) $(echo "$before $after $HZ $requests" | awk '{printf "%.1f", ($2 - $1) / $3 * 1e6 / $4}')"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ms() { awk '{v = $1; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}; printf "%.3f\n", v}'; }

echo "== keep-alive chain, $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds (medians)"
declare -A RESULTS=()
for round in $(seq "$ROUNDS"); do
  for target in sidecar nginx; do RESULTS[$target]+="$(run "$target")"$'\n'; done
done
printf "%-8s %10s %9s %9s %16s\n" chain "req/s" "p50 ms" "p99 ms" "CPU µs/req (A+B)"
for target in sidecar nginx; do
  rows=$(echo -n "${RESULTS[$target]}")
  printf "%-8s %10s %9s %9s %16s\n" "$target" "$(echo "$rows" | awk '{print $1}' | median)" \
    "$(echo "$rows" | awk '{print $2}' | ms | median)" "$(echo "$rows" | awk '{print $3}' | ms | median)" \
    "$(echo "$rows" | awk '{print $4}' | median)"
done

# New mutual TLS connections per second to B: a full handshake (client certificate verified) and one GET each.
SECONDS_PER_RUN=${DURATION%s}
echo "== new mutual TLS connections per second to B (openssl s_time -new, ${SECONDS_PER_RUN}s, $ROUNDS rounds)"
for target in sidecar nginx; do
  rates=""
  for round in $(seq "$ROUNDS"); do
    rate=$(taskset -c 1 openssl s_time -connect "127.0.0.1:${BPORT[$target]}" -new -time "$SECONDS_PER_RUN" -www / \
      -cert "$WORK/bench.pem" -key "$WORK/bench.key" -CAfile "$WORK/roots.pem" 2>/dev/null \
      | awk -v s="$SECONDS_PER_RUN" '/connections in [0-9.]+ real seconds/ {printf "%.0f", $1 / s}' | head -1)
    rates+="$rate"$'\n'
  done
  printf "%-8s %s handshakes/s\n" "$target" "$(echo -n "$rates" | median)"
done

# RSS of B with 1,000 mutual TLS connections open (each has made one request).
echo "== RSS of B: idle, then with 1,000 mutual TLS connections open (MiB)"
for target in sidecar nginx; do
  idle=$(( $(rss_kib "${PID_B[$target]}") / 1024 ))
  python3 - "${BPORT[$target]}" "$WORK" <<'PY' &
import socket, ssl, sys, time
port, work = int(sys.argv[1]), sys.argv[2]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.load_verify_locations(work + "/roots.pem")
context.load_cert_chain(work + "/bench.pem", work + "/bench.key")
held = []
for _ in range(1000):
    s = context.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    held.append(s)
open(work + "/held", "w").close()
time.sleep(3)
PY
  holder=$!
  for _ in $(seq 300); do [ -e "$WORK/held" ] && break; sleep 0.1; done
  sleep 1
  printf "%-8s %s %s\n" "$target" "$idle" "$(( $(rss_kib "${PID_B[$target]}") / 1024 ))"
  wait "$holder"
  rm -f "$WORK/held"
done
