"""Blocking-query fan-out: park N watchers on one service, make one change, time until all answered.

Usage: fanout.py HOST:PORT PID N
Prints the registry's RSS before and after parking (memory per watcher) and the time from the
change until the last watcher got its answer. A bare epoll loop keeps the client's own cost small.
"""
import resource, select, socket, sys, time, urllib.request

host, port = sys.argv[1].split(":")
pid, count = int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 1024, count + 1024))


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def http(method, path, body=None):
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=body, method=method)
    with urllib.request.urlopen(req) as r:
        return r.headers.get("X-Consul-Index")


http("PUT", "/v1/agent/service/register", b'{"Name":"fan","ID":"fan1","Check":{"TTL":"1h","Status":"passing"}}')
index = http("GET", "/v1/health/service/fan")
before = rss_kib()
request = f"GET /v1/health/service/fan?index={index}&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n".encode()
poller = select.epoll()
sockets = {}
for _ in range(count):
    s = socket.create_connection((host, int(port)))
    s.sendall(request)
    s.setblocking(False)
    sockets[s.fileno()] = s
    poller.register(s.fileno(), select.EPOLLIN)
time.sleep(2)  # every request is parked
early = poller.poll(0)
parked = rss_kib()
start = time.monotonic()
http("PUT", "/v1/agent/check/warn/service:fan1")
answered = 0
last = start
while answered < count:
    for fd, _ in poller.poll(10):
        data = sockets[fd].recv(65536)
        if data.startswith(b"HTTP/1.1 200"):
            answered += 1
            last = time.monotonic()
        poller.unregister(fd)
print(f"watchers={count} answered_early={len(early)} all_answered_ms={(last - start) * 1000:.1f} "
      f"rss_before_kib={before} rss_parked_kib={parked} bytes_per_watcher={(parked - before) * 1024 / count:.0f}")
