#!/usr/bin/env python3
"""Records a history of concurrent KV operations against a registry that is killed with -9 again
and again, and checks it.

    kv_history.py TRELLIS_BINARY DATA_DIR [--seconds N] [--clients N] [--kill-every S] [--seed N]

Each client owns one key, which it writes in sequence (put, CAS, delete, transactions), and all
clients increment one shared counter with CAS. A watcher follows every client key with blocking
queries. The registry runs on one port and data directory and is killed with -9 every few
seconds, then started again. Checked afterwards:
  - every acknowledged write is present: each key ends with the value of its client's last
    acknowledged write, or of a later write whose answer was lost in a kill;
  - no write applied twice, CAS linearizable: every acknowledged counter increment took a
    distinct value, and the counter ends between the acknowledged and the attempted increments;
  - X-Consul-Index never goes backwards for a client reading the same key;
  - no blocking query answers with an index below the one it was given, or with a value older
    than one the watcher already saw;
  - no change missed: each watcher ends on its key's final value.
Prints one line per anomaly and a summary; exits 1 when there is any.
"""
import argparse, base64, http.client, json, os, random, signal, socket, subprocess, sys, threading, time

args = argparse.ArgumentParser()
args.add_argument("binary")
args.add_argument("data_dir")
args.add_argument("--seconds", type=float, default=20)
args.add_argument("--clients", type=int, default=4)
args.add_argument("--kill-every", type=float, default=2.0)
args.add_argument("--seed", type=int, default=1)
opts = args.parse_args()
random.seed(opts.seed)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
registry = None
anomalies = []
lock = threading.Lock()


def anomaly(text):
    with lock:
        anomalies.append(text)


def start_registry():
    global registry
    registry = subprocess.Popen([opts.binary, "registry", "--http-addr", f"127.0.0.1:{PORT}", "--data-dir", opts.data_dir,
                                 "--node", "history", "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if request("GET", "/v1/status/leader", timeout=1)[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the registry did not start")


class Lost(Exception):
    """The answer never came: the write may or may not have been applied."""


def request(method, path, body=None, timeout=10):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.getheader("X-Consul-Index"), response.read()
    finally:
        connection.close()


def call(method, path, body=None, timeout=10):
    try:
        return request(method, path, body, timeout)
    except (OSError, http.client.HTTPException) as error:
        raise Lost(str(error))


class Client(threading.Thread):
    def __init__(self, number, stop):
        super().__init__(daemon=True)
        self.key = f"history/c{number}"
        self.stop = stop
        self.sequence = 0
        self.acknowledged = None      # the value of the last acknowledged write ("" for a delete)
        self.attempted_after = set()  # values written since, whose answers were lost
        self.last_index = {}          # by read path: the index of a query never goes back
        self.operations = 0
        self.increments_acknowledged = []
        self.increments_attempted = 0

    def note_index(self, index, path):
        if index is None:
            return
        index, last = int(index), self.last_index.get(path, 0)
        if index < last:
            anomaly(f"{self.key}: X-Consul-Index of {path} went back from {last} to {index}")
        self.last_index[path] = max(last, index)

    def write(self, value, perform):
        try:
            ok = perform(value)
        except Lost:
            self.attempted_after.add(value)
            return
        if ok:
            self.acknowledged = value
            self.attempted_after = set()

    def put(self, value):
        status, index, body = call("PUT", f"/v1/kv/{self.key}", value.encode())
        return status == 200 and body.strip() == b"true"

    def cas(self, value):
        status, index, body = call("GET", f"/v1/kv/{self.key}")
        self.note_index(index, self.key)
        modify = json.loads(body)[0]["ModifyIndex"] if status == 200 else 0
        status, index, body = call("PUT", f"/v1/kv/{self.key}?cas={modify}", value.encode())
        return status == 200 and body.strip() == b"true"

    def delete(self, _):
        status, index, body = call("DELETE", f"/v1/kv/{self.key}")
        return status == 200

    def transaction(self, value):
        ops = [{"KV": {"Verb": "set", "Key": self.key, "Value": base64.b64encode(value.encode()).decode()}},
               {"KV": {"Verb": "get", "Key": self.key}}]
        status, index, _ = call("PUT", "/v1/txn", json.dumps(ops).encode())
        return status == 200

    def increment(self):
        status, index, body = call("GET", "/v1/kv/history/counter")
        self.note_index(index, "history/counter")
        if status == 200:
            entry = json.loads(body)[0]
            current, modify = int(base64.b64decode(entry["Value"] or "") or b"0"), entry["ModifyIndex"]
        else:
            current, modify = 0, 0
        self.increments_attempted += 1
        status, index, body = call("PUT", f"/v1/kv/history/counter?cas={modify}", str(current + 1).encode())
        if status == 200 and body.strip() == b"true":
            self.increments_acknowledged.append(current + 1)

    def run(self):
        while not self.stop.is_set():
            self.sequence += 1
            value = f"{self.key}#{self.sequence}"
            kind = random.choice(["put", "put", "cas", "txn", "delete", "increment"])
            self.operations += 1
            if kind == "increment":
                try:
                    self.increment()
                except Lost:
                    pass
            elif kind == "delete":
                self.write("", self.delete)
            else:
                self.write(value, {"put": self.put, "cas": self.cas, "txn": self.transaction}[kind])


class Watcher(threading.Thread):
    """Follows one key with blocking queries; the sequence numbers it sees never go back."""

    def __init__(self, key, stop):
        super().__init__(daemon=True)
        self.key, self.stop = key, stop
        self.index, self.seen, self.answers, self.value = 0, None, 0, None

    def run(self):
        while not self.stop.is_set():
            asked = self.index
            try:
                status, index, body = call("GET", f"/v1/kv/{self.key}?index={asked}&wait=1s", timeout=5)
            except Lost:
                time.sleep(0.05)
                continue
            self.answers += 1
            index = int(index or 0)
            if index < asked:
                anomaly(f"watch {self.key}: asked for index > {asked}, answered {index}")
            self.index = index
            value = base64.b64decode(json.loads(body)[0]["Value"] or "").decode() if status == 200 else ""
            number = int(value.split("#")[1]) if value else None
            if number is not None and self.seen is not None and number < self.seen:
                anomaly(f"watch {self.key}: saw #{number} after #{self.seen}")
            if number is not None:
                self.seen = number
            self.value = value


def value_of(key):
    status, _, body = request("GET", f"/v1/kv/{key}")
    return base64.b64decode(json.loads(body)[0]["Value"] or "").decode() if status == 200 else ""


start_registry()
stop, stop_watching = threading.Event(), threading.Event()
clients = [Client(n, stop) for n in range(opts.clients)]
watchers = [Watcher(c.key, stop_watching) for c in clients]
for thread in clients + watchers:
    thread.start()
kills, started = 0, time.time()
while time.time() - started < opts.seconds:
    time.sleep(opts.kill_every * random.uniform(0.5, 1.5))
    registry.send_signal(signal.SIGKILL)
    registry.wait()
    kills += 1
    start_registry()
stop.set()
for thread in clients:
    thread.join()
time.sleep(2.5)  # the watchers see the last writes: their blocking queries wait 1 s at most
stop_watching.set()
for thread in watchers:
    thread.join()

for client, watcher in zip(clients, watchers):
    final = value_of(client.key)
    allowed = {client.acknowledged} | client.attempted_after if client.acknowledged is not None else client.attempted_after | {""}
    if final not in allowed:
        anomaly(f"{client.key}: ends as {final!r}; last acknowledged {client.acknowledged!r}, lost answers {sorted(client.attempted_after)}")
    if watcher.value != final:
        anomaly(f"watch {client.key}: last saw {watcher.value!r}, the key ends as {final!r}")
acknowledged = [v for c in clients for v in c.increments_acknowledged]
if len(acknowledged) != len(set(acknowledged)):
    anomaly("counter: two acknowledged CAS increments took the same value")
counter = int(value_of("history/counter") or "0")
attempted = sum(c.increments_attempted for c in clients)
if not len(acknowledged) <= counter <= attempted:
    anomaly(f"counter: ends at {counter}, {len(acknowledged)} increments acknowledged of {attempted} attempted")
registry.send_signal(signal.SIGKILL)
registry.wait()

for line in anomalies:
    print("anomaly:", line)
operations = sum(c.operations for c in clients)
answers = sum(w.answers for w in watchers)
print(f"history: {kills} kills, {operations} operations, {answers} blocking answers, {len(acknowledged)} counter increments, "
      f"{len(anomalies)} anomalies")
sys.exit(1 if anomalies else 0)
