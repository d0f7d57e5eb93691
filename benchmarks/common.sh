# Shared by the benchmark scripts: scratch directory, process cleanup, peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TRELLIS_BIN:-.build/release/trellis}
WORK=$(mktemp -d /tmp/trellis-bench.XXXXXX)
DURATION=${DURATION:-10s}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# Starts nginx (1 worker, CPU $1) with the given `server { ... }` block on 127.0.0.1:18080.
start_nginx() {
  cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080; $2 } }
NGINX
  taskset -c "$1" nginx -c "$WORK/nginx.conf" & NGINX_PID=$!; PIDS+=("$NGINX_PID"); sleep 0.5
}

# Starts a single-node etcd on CPU 0, client port 12379.
start_etcd() {
  rm -rf "$WORK/etcd"
  taskset -c 0 etcd --data-dir "$WORK/etcd" --listen-client-urls http://127.0.0.1:12379 \
    --advertise-client-urls http://127.0.0.1:12379 --listen-peer-urls http://127.0.0.1:12380 \
    --log-level error > "$WORK/etcd.log" 2>&1 & ETCD_PID=$!; PIDS+=("$ETCD_PID")
  for _ in $(seq 100); do curl -sf 127.0.0.1:12379/health >/dev/null && return; sleep 0.1; done
  echo "etcd did not start"; exit 1
}

# Writes $WORK/$1.conf for a proxy benchmark: one nginx worker in the foreground, no access log,
# unlimited keep-alive requests, and the given contents of its `http { }` block.
nginx_conf() {
  cat > "$WORK/$1.conf" <<NGINX
worker_processes 1; daemon off; master_process off; pid $WORK/$1.pid; error_log $WORK/$1-error.log;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
$2 }
NGINX
}

wrk_rps() { # prints "req/s p50 p99" from wrk --latency output
  awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
