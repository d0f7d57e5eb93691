"""py-consul's root conftest, with its Docker-started Consul replaced by the real `trellis registry`.

Every test gets a fresh registry on a free loopback port and its own data directory, started as
the suite starts Consul (`enable_script_checks` on). ACL tests get a registry with ACLs enabled and
an initial management token, as the suite configures Consul. With `TRELLIS_ACL_DEFAULT_DENY=1`
every other test runs against a default-deny registry with the management token in
`CONSUL_HTTP_TOKEN` (which py-consul's client reads) and as the agent's default token
(`acl.tokens.default`), which answers the calls py-consul makes without a token.
"""

from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])
TRELLIS = os.environ["TRELLIS_BIN"]


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    os.environ.pop("CONSUL_HTTP_TOKEN", None)


def _free_port() -> int:
    """Consul's 8500 when it is free: some tests give checks `http://localhost:8500`, the agent itself."""
    for port in (8500, 0):
        with socket.socket() as s:
            # As the registry binds: connections of the previous test in TIME_WAIT do not hold the port.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def _start_registry(acl_flags=()):
    data = tempfile.mkdtemp(prefix="py-consul-")
    port = _free_port()
    process = subprocess.Popen(
        [TRELLIS, "registry", "--http-addr", f"127.0.0.1:{port}", "--data-dir", data, "--node", "trellis-py-consul",
         "--enable-script-checks", "--log-level", "error", *acl_flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/status/leader", timeout=1).status_code == 200:
                return process, port, data
        except requests.RequestException:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError("trellis registry did not answer")


def _stop(process, data):
    process.kill()
    process.wait()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["trellis"])
def consul_instance(request):
    if os.environ.get("TRELLIS_ACL_DEFAULT_DENY") == "1":
        token = uuid.uuid4().hex
        process, port, data = _start_registry(
            ["--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", token,
             "--acl-default-token", token])
        os.environ["CONSUL_HTTP_TOKEN"] = token
    else:
        token = None
        process, port, data = _start_registry()
    headers = {"X-Consul-Token": token} if token else {}
    version = requests.get(f"http://127.0.0.1:{port}/v1/agent/self", headers=headers, timeout=5).json()["Config"]["Version"]
    yield ConsulInstance(process, port, version)
    os.environ.pop("CONSUL_HTTP_TOKEN", None)
    _stop(process, data)


@pytest.fixture(params=["trellis"])
def acl_consul_instance(request):
    """As the suite's Consul: ACLs enabled (default policy allow) with an initial management token."""
    token = uuid.uuid4().hex
    process, port, data = _start_registry(["--acl-enabled", "--acl-initial-management-token", token])
    version = requests.get(f"http://127.0.0.1:{port}/v1/agent/self", headers={"X-Consul-Token": token},
                           timeout=5).json()["Config"]["Version"]
    yield ConsulInstance(process, port, version), token
    _stop(process, data)


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version
