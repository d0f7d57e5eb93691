#!/usr/bin/env bash
# DNS benchmark: the registry's DNS interface beside dnsmasq serving the same records from memory,
# in the same run. 20 services of 3 healthy instances each (plus one critical instance each, which
# the registry leaves out); dnsperf sends A queries for the 20 names (and 20 unknown names, NXDOMAIN),
# 3 alternating rounds. Servers are pinned to CPU 0, dnsperf to CPU 1.
source "$(dirname "$0")/common.sh"
REG_DNS=18600
MASQ_DNS=18601

rm -rf "$WORK/reg"
taskset -c 0 "$BIN" registry --http-addr 127.0.0.1:18500 --data-dir "$WORK/reg" --node bench --log-level error \
  --dns-addr "127.0.0.1:$REG_DNS" > "$WORK/registry.out" 2>&1 &
REG_PID=$!; PIDS+=("$REG_PID")
for _ in $(seq 100); do curl -sf 127.0.0.1:18500/v1/status/leader >/dev/null && break; sleep 0.1; done

: > "$WORK/hosts"; : > "$WORK/queries"
for s in $(seq 1 20); do
  for i in 1 2 3 4; do
    status=passing; [ "$i" = 4 ] && status=critical
    curl -sf -X PUT 127.0.0.1:18500/v1/catalog/register -d "{\"Node\":\"n$s-$i\",\"Address\":\"10.$s.0.$i\",
      \"Service\":{\"ID\":\"svc$s-$i\",\"Service\":\"svc$s\",\"Port\":8080},
      \"Check\":{\"CheckID\":\"c$s-$i\",\"Status\":\"$status\",\"ServiceID\":\"svc$s-$i\"}}" > /dev/null
    [ "$status" = passing ] && echo "10.$s.0.$i svc$s.service.consul" >> "$WORK/hosts"
  done
  echo "svc$s.service.consul A" >> "$WORK/queries"
  echo "missing$s.service.consul A" >> "$WORK/queries"
done
# dnsmasq: authoritative from its hosts file only (no upstream, no /etc/hosts), the same answers.
taskset -c 0 dnsmasq --keep-in-foreground --no-daemon --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
  --listen-address=127.0.0.1 --bind-interfaces --port=$MASQ_DNS --local=/consul/ --cache-size=0 \
  --pid-file="$WORK/dnsmasq.pid" --user="$(id -un)" 2> "$WORK/dnsmasq.log" &
MASQ_PID=$!; PIDS+=("$MASQ_PID")
sleep 0.5
echo "registry answer: $(dig @127.0.0.1 -p $REG_DNS svc1.service.consul +short | sort | tr '\n' ' ')"
echo "dnsmasq answer:  $(dig @127.0.0.1 -p $MASQ_DNS svc1.service.consul +short | sort | tr '\n' ' ')"

seconds=${DURATION%s}
qps() { # dnsperf's "Queries per second" and the average latency
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries" -l "$seconds" -c 8 -q 200 2>&1 |
    awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4} /Queries lost/ {lost=$3} END {printf "%s qps, %s s avg, lost %s", q, l, lost}'
}
echo "== DNS A queries, 40 names (half NXDOMAIN), 8 clients, 200 outstanding, $DURATION"
for round in 1 2 3; do
  T=$(qps $REG_DNS); M=$(qps $MASQ_DNS)
  echo "round $round  trellis: $T   dnsmasq: $M   ratio: $(echo "$T $M" | awk '{printf "%.2f", $1 / $8}')"
done
echo "registry RSS: $(rss_kib "$REG_PID") KiB"
