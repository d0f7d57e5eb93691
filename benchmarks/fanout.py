"""Blocking-query fan-out: park N watchers on one service, make one change, time until all answered.

Usage: fanout.py HOST:PORT PID N
Prints the registry's RSS before and after parking (memory per watcher) and the wake-up time.
"""
import asyncio, resource, sys, time, urllib.request

host, port = sys.argv[1].split(":")
pid, count = int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (count + 1024, count + 1024))


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def http(method, path, body=b""):
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=body if method != "GET" else None, method=method)
    with urllib.request.urlopen(req) as r:
        return r.headers.get("X-Consul-Index"), r.read()


async def watcher(index, parked, done_times):
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /v1/health/service/fan?index={index}&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    parked.append(1)
    await reader.readuntil(b"\r\n\r\n")
    done_times.append(time.monotonic())
    writer.close()


async def main():
    http("PUT", "/v1/agent/service/register", b'{"Name":"fan","ID":"fan1","Check":{"TTL":"1h","Status":"passing"}}')
    index, _ = http("GET", "/v1/health/service/fan")
    before = rss_kib()
    parked, done_times = [], []
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(watcher(index, parked, done_times)))
        if i % 500 == 0:
            await asyncio.sleep(0)
    while len(parked) < count:
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)
    parked_rss = rss_kib()
    start = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, http, "PUT", "/v1/agent/check/warn/service:fan1")
    await asyncio.gather(*tasks)
    elapsed = max(done_times) - start
    print(f"watchers={count} all_answered_ms={elapsed * 1000:.1f} "
          f"rss_before_kib={before} rss_parked_kib={parked_rss} "
          f"bytes_per_watcher={(parked_rss - before) * 1024 / count:.0f}")

asyncio.run(main())
