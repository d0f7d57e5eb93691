#!/usr/bin/python3
"""The registry's web UI in a real headless Chromium, against a running shop (`trellis up`).

Arguments: the shop's endpoints.env, the trellis binary (for a second registry, without ACLs,
that holds 1,000 services and is killed while a page is open), and the folder the screenshots go
to. Prints one line per check and closes with "N passed, N failed"; exits 1 when a check failed.
"""
import json
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import sys
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ENDPOINTS_FILE, TRELLIS, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
ENDPOINTS = dict(line.split("=", 1) for line in open(ENDPOINTS_FILE).read().split() if "=" in line)
REGISTRY = ENDPOINTS["TRELLIS_ADDR"]
MANAGEMENT = open(ENDPOINTS["CONSUL_HTTP_TOKEN_FILE"]).read().strip()
DATA_DIR = os.path.dirname(os.path.abspath(ENDPOINTS_FILE))
TRACE_ID = secrets.token_hex(16)  # a new trace each run
os.makedirs(SHOTS, exist_ok=True)


def call(method, url, body=None, headers=None, token=None):
    """One HTTP call; answers (status, body bytes)."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if token:
        request.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def browser(width=1280, height=900):
    options = webdriver.ChromeOptions()
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--lang=en-US"]:
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait(driver, what, condition, timeout=30):
    try:
        # Live pages re-render: an element read just before its row was redrawn is read again.
        return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} (waited {timeout} s); page text: {driver.find_element(By.TAG_NAME, 'main').text[:600]!r}")


def rows(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def status_of(driver, service):
    found = rows(driver, f'#services tbody tr[data-service="{service}"]')
    return found[0].get_attribute("data-status") if found else None


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, name + ".png"))


def service_pids(command):
    """PIDs of the shop service processes named `command` that run under this shop's data dir."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if argv and argv[0].endswith(command.encode()) and cwd.startswith(DATA_DIR):
            pids.append(int(entry))
    return pids


def place_order():
    """The shop's walkthrough, with an order under a known trace id; answers the order's status."""
    users, catalog, orders = ENDPOINTS["USERS_URL"], ENDPOINTS["CATALOG_URL"], ENDPOINTS["ORDERS_URL"]
    credentials = {"username": "uitest", "password": "correct horse"}
    call("POST", users + "/users", credentials)
    status, body = call("POST", users + "/login", credentials)
    assert status == 200, f"login: {status} {body!r}"
    token = json.loads(body)["token"]
    status, body = call("POST", catalog + "/products", {"name": "Tea", "price_cents": 450, "stock": 1000})
    assert status == 201, f"product: {status} {body!r}"
    product = json.loads(body)["id"]
    status, body = call("POST", orders + "/orders", {"product_id": product, "quantity": 1},
                        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json",
                                 "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
    assert status == 201, f"order: {status} {body!r}"
    for _ in range(30):
        call("GET", catalog + "/products")
        call("GET", orders + "/health")


def check_login_and_services(driver):
    driver.get(f"http://{REGISTRY}/")  # a browser at the root is sent to the UI
    secret = wait(driver, "the UI asks for a token under default-deny ACLs", lambda d: rows(d, "#secret"))[0]
    secret.send_keys("not-a-token")
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait(driver, "a wrong token is refused in words", lambda d: "Your token was refused" in d.find_element(By.ID, "loginResult").text)
    secret = driver.find_element(By.ID, "secret")
    secret.clear()
    secret.send_keys(MANAGEMENT)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait(driver, "every shop service is listed and passing",
         lambda d: all(status_of(d, s) == "passing" for s in ["users", "catalog", "orders", "notifications", "trellis-collector"]))
    assert driver.execute_script("return sessionStorage.getItem('trellis.token')") == MANAGEMENT, "the token is kept in the session"
    assert driver.execute_script("return localStorage.length") == 0, "and nowhere lasting"


def check_traffic(driver):
    place_order()
    wait(driver, "the orders row shows a request rate from the collector", lambda d: any(
        cell.text not in ("…", "–", "") for cell in rows(d, '#services tbody tr[data-service="orders"] td.num')[1:2]), timeout=40)
    shot(driver, "services")


def check_failure_and_recovery(driver):
    pids = service_pids("shop-catalog")
    assert len(pids) == 2, f"two catalog replicas run: {pids}"
    os.kill(pids[0], signal.SIGSTOP)
    try:
        wait(driver, "a stopped catalog replica shows as failing without a reload", lambda d: status_of(d, "catalog") == "critical")
        wait(driver, "failing services come first", lambda d: rows(d, "#services tbody tr")[0].get_attribute("data-service") == "catalog")
        shot(driver, "services-failing")
    finally:
        os.kill(pids[0], signal.SIGCONT)
    wait(driver, "the replica recovers", lambda d: status_of(d, "catalog") == "passing")


def check_service_page(driver):
    driver.get(f"http://{REGISTRY}/ui/#/services/orders")
    wait(driver, "both orders instances are listed", lambda d: len(rows(d, "#instances tr[data-instance]")) == 2)
    wait(driver, "the graph shows the orders service's upstreams",
         lambda d: all(name in d.find_element(By.ID, "graph").text for name in ["users", "catalog", "notifications"]))
    wait(driver, "the policy in force and its source", lambda d: "Source:" in d.find_element(By.ID, "policy").text)
    wait(driver, "recent log lines with trace links", lambda d: rows(d, "#logs a[href^='#/trace/']"))
    details = rows(driver, "#instances details")[0]
    details.click()
    assert details.find_element(By.TAG_NAME, "pre").text.strip(), "check output is shown"
    filter_box = driver.find_element(By.ID, "logFilter")
    filter_box.send_keys(TRACE_ID)
    driver.find_element(By.CSS_SELECTOR, "#logForm button").click()
    wait(driver, "the trace-id filter keeps only that trace's lines",
         lambda d: (lines := rows(d, "#logs tbody tr")) and all(TRACE_ID in l.text or TRACE_ID[:8] in l.text for l in lines))
    shot(driver, "service")


def check_trace(driver):
    driver.get(f"http://{REGISTRY}/ui/#/trace/{TRACE_ID}")
    wait(driver, "every hop of the order is on the trace page", lambda d: {
        r.get_attribute("data-service") for r in rows(d, '#hops tr[data-kind="hop"]')} >= {"orders", "users", "catalog", "notifications"}, timeout=40)
    hops = rows(driver, '#hops tr[data-kind="hop"]')
    assert all(r.find_elements(By.CSS_SELECTOR, ".wf span") for r in hops), "each hop has a bar in the waterfall"
    assert any("←" in r.text for r in hops), "span and parent ids are shown"
    shot(driver, "trace")


def check_kv(driver):
    key = "ui-test/greeting"
    call("DELETE", f"http://{REGISTRY}/v1/kv/ui-test?recurse", token=MANAGEMENT)
    driver.get(f"http://{REGISTRY}/ui/#/kv/")
    wait(driver, "the KV root lists the shop's policies folder", lambda d: "trellis/" in d.find_element(By.ID, "keys").text)
    driver.find_element(By.ID, "newKey").send_keys(key)
    driver.find_element(By.ID, "newValue").send_keys("hello")
    driver.find_element(By.CSS_SELECTOR, "#create button").click()
    editor = wait(driver, "the new key opens in the editor", lambda d: (e := rows(d, "#value")) and e[0].get_attribute("value") == "hello" and e[0])
    # Someone else changes the key while it is open here.
    status, _ = call("PUT", f"http://{REGISTRY}/v1/kv/{key}", b"changed elsewhere", token=MANAGEMENT)
    assert status == 200
    editor.clear()
    editor.send_keys("my edit")
    driver.find_element(By.CSS_SELECTOR, "#edit button[type=submit]").click()
    conflict = wait(driver, "a stale save shows the conflict", lambda d: rows(d, "#conflict"))[0]
    assert "changed elsewhere" in conflict.text, conflict.text
    _, stored = call("GET", f"http://{REGISTRY}/v1/kv/{key}?raw", token=MANAGEMENT)
    assert stored == b"changed elsewhere", f"nothing was overwritten: {stored!r}"
    shot(driver, "kv-conflict")
    driver.find_element(By.ID, "keepMine").click()
    wait(driver, "saving over it on purpose works", lambda d: "Saved" in d.find_element(By.ID, "result").text)
    _, stored = call("GET", f"http://{REGISTRY}/v1/kv/{key}?raw", token=MANAGEMENT)
    assert stored == b"my edit", stored
    call("PUT", f"http://{REGISTRY}/v1/kv/ui-test/blob", bytes([0, 1, 0xFF, 0x10]), token=MANAGEMENT)
    driver.get(f"http://{REGISTRY}/ui/#/kv/ui-test/blob")
    wait(driver, "a binary value is shown as hex", lambda d: (e := rows(d, "#value")) and e[0].get_attribute("value") == "00 01 ff 10")
    driver.find_element(By.ID, "delete").click()
    driver.switch_to.alert.accept()
    wait(driver, "deleting returns to the folder", lambda d: d.current_url.endswith("#/kv/ui-test/"))
    status, _ = call("GET", f"http://{REGISTRY}/v1/kv/ui-test/blob", token=MANAGEMENT)
    assert status == 404, "the key is gone"


def check_intentions_and_acl(driver):
    driver.get(f"http://{REGISTRY}/ui/#/intentions")
    wait(driver, "trellis up's intentions are listed", lambda d: rows(d, '#intentionList tr[data-source="orders"][data-destination="catalog"]'))
    driver.find_element(By.ID, "source").send_keys("web")
    driver.find_element(By.ID, "destination").send_keys("orders")
    driver.find_element(By.CSS_SELECTOR, "#action option[value=deny]").click()
    driver.find_element(By.CSS_SELECTOR, "#create button").click()
    row = wait(driver, "a created intention appears live", lambda d: rows(d, '#intentionList tr[data-source="web"]'))[0]
    assert "deny" in row.text
    row.find_element(By.CSS_SELECTOR, "[data-delete]").click()
    wait(driver, "a deleted intention disappears", lambda d: not rows(d, '#intentionList tr[data-source="web"]'))
    driver.get(f"http://{REGISTRY}/ui/#/acl")
    wait(driver, "the ACL page lists tokens and policies",
         lambda d: len(rows(d, "#tokenList tbody tr")) >= 3 and rows(d, "#policyList tbody tr"))
    shot(driver, "acl")


def check_narrow_token(driver):
    """A token that may read one service sees only it; the metrics proxy says why traffic is hidden."""
    policy = f"ui-read-users-{int(time.time())}"
    status, body = call("PUT", f"http://{REGISTRY}/v1/acl/policy", {"Name": policy, "Rules": 'service "users" { policy = "read" } node_prefix "" { policy = "read" }'},
                        token=MANAGEMENT)
    assert status == 200, body
    status, body = call("PUT", f"http://{REGISTRY}/v1/acl/token", {"Description": "ui narrow", "Policies": [{"Name": policy}]}, token=MANAGEMENT)
    assert status == 200, body
    secret = json.loads(body)["SecretID"]
    driver.find_element(By.ID, "logout").click()
    field = wait(driver, "logging out asks for a token again", lambda d: rows(d, "#secret"))[0]
    field.send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait(driver, "the narrow token lists only what it may read",
         lambda d: [r.get_attribute("data-service") for r in rows(d, "#services tbody tr")] == ["users"])
    wait(driver, "and hears why traffic is hidden", lambda d: "Traffic is hidden" in d.find_element(By.ID, "trafficNote").text)
    driver.get(f"http://{REGISTRY}/ui/#/kv/trellis/policies/catalog")
    wait(driver, "a refused read is explained", lambda d: "does not allow" in d.find_element(By.ID, "entry").text)
    driver.find_element(By.ID, "logout").click()


def check_page_weight(driver):
    driver.get("about:blank")  # a fresh document: the entries count this page's loads only
    driver.get(f"http://{REGISTRY}/ui/#/services")
    wait(driver, "the services page renders", lambda d: rows(d, "#services tbody tr"))
    time.sleep(1)
    weight = driver.execute_script(
        "return performance.getEntries().reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0)")
    assert 0 < weight < 200 * 1024, f"the services page weighs {weight} bytes"
    print(f"  services page weight: {weight} bytes")


class Registry:
    """A `trellis registry` of this suite's own, on a loopback port that it keeps across restarts."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="trellis-ui-")
        self.address = "127.0.0.1:0"
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen([TRELLIS, "registry", "--http-addr", self.address, "--data-dir", self.data, "--log-level", "warning"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.process.stdout:
            if "listening on http://" in line:
                self.address = line.split("http://")[1].split()[0]
                # Keep reading what it prints, so that a full pipe never blocks it.
                threading.Thread(target=lambda out=self.process.stdout: [None for _ in out], daemon=True).start()
                return
        raise AssertionError("the registry did not start")

    def kill(self):
        self.process.kill()
        self.process.wait()


def check_thousand_services(big):
    for index in range(1000):
        body = {"Name": f"svc-{index:04d}", "ID": f"svc-{index:04d}", "Port": 10000 + index, "Tags": ["bulk"]}
        if index % 100 == 7:
            body["Check"] = {"TTL": "60s"}  # never passed: critical
        status, answer = call("PUT", f"http://{big.address}/v1/agent/service/register", body)
        assert status == 200, answer
    driver = browser()
    try:
        driver.get(f"http://{big.address}/ui/")
        wait(driver, "1,000 services render", lambda d: len(rows(d, "#services tbody tr")) >= 1000)
        first = [r.get_attribute("data-service") for r in rows(driver, "#services tbody tr")[:10]]
        assert first == [f"svc-{i:04d}" for i in range(7, 1000, 100)], f"the failing ten come first: {first}"
        driver.find_element(By.ID, "filter").send_keys("svc-0999")
        wait(driver, "the page stays responsive: filtering narrows at once",
             lambda d: [r.get_attribute("data-service") for r in rows(d, "#services tbody tr")] == ["svc-0999"], timeout=10)
        shot(driver, "services-1000")
    finally:
        driver.quit()


def check_phone(big):
    driver = browser(390, 844)
    try:
        driver.get(f"http://{big.address}/ui/#/services")
        wait(driver, "the services page renders on a phone", lambda d: rows(d, "#services tbody tr"))
        overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
        shot(driver, "services-phone")
    finally:
        driver.quit()


def check_unreachable_registry(big):
    """The registry going away is said in words, and the page recovers by itself when it is back."""
    driver = browser()
    try:
        driver.get(f"http://{big.address}/ui/#/services")
        wait(driver, "the services page renders", lambda d: len(rows(d, "#services tbody tr")) >= 1000)
        big.kill()
        banner = wait(driver, "an unreachable registry is announced", lambda d: (b := d.find_element(By.ID, "banner")).is_displayed() and b)
        assert "unreachable" in banner.text, banner.text
        shot(driver, "registry-unreachable")
        big.start()
        wait(driver, "the page recovers without a reload", lambda d: not d.find_element(By.ID, "banner").is_displayed())
        wait(driver, "with every service", lambda d: len(rows(d, "#services tbody tr")) >= 1000)
    finally:
        driver.quit()


def run(check, argument, on_failure=None):
    """Runs one check and prints its line; answers whether it passed."""
    started = time.time()
    try:
        check(argument)
        print(f"ok    {check.__name__} ({time.time() - started:.1f} s)", flush=True)
        return True
    except Exception:
        print(f"FAIL  {check.__name__}\n{traceback.format_exc()}", flush=True)
        if on_failure:
            on_failure(check.__name__)
        return False


def main():
    results = []
    driver = browser()
    try:
        for check in [check_login_and_services, check_traffic, check_failure_and_recovery, check_service_page, check_trace,
                      check_kv, check_intentions_and_acl, check_page_weight, check_narrow_token]:
            results.append(run(check, driver, on_failure=lambda name: shot(driver, "failed-" + name)))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]
        if errors:
            print("FAIL  script errors in the browser console:", errors, flush=True)
        results.append(not errors)
    finally:
        driver.quit()
    big = Registry()
    try:
        for check in [check_thousand_services, check_phone, check_unreachable_registry]:
            results.append(run(check, big))
    finally:
        big.kill()
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
