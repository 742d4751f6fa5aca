#!/usr/bin/env python3
"""The operator console in a real browser: Debian's Chromium, headless,
driven through chromedriver by Selenium (never a downloaded browser).

Run by tests/console_browser.rs against a running `clearway serve`, with a
JSON description of it on standard input:

  {"base": "http://127.0.0.1:PORT", "operator": {"name": ..., "password": ...},
   "admin": {...}, "partner_key": ..., "shots": DIR, "axe": PATH/axe.min.js,
   "chromium": PATH, "chromedriver": PATH, "x12_good": TEXT, "x12_bad": TEXT,
   "marker": a patient's last name in x12_good}

What it does, failing (exit 1, the reason on standard error) at the first
thing that is not as it should be:
- signs in through the form; the session cookie is `__Host-`, Secure,
  HttpOnly, SameSite=Strict, and page script cannot read it;
- the dashboard's figures refresh by themselves after a submission made
  through the API;
- search finds the submission by id; its page shows the X12 masked (the
  marker, a patient's name, is nowhere in it) until the operator gives a
  reason, and then in clear; a second submission's 999 error sits on the
  element it is about (DMG03);
- a form on another origin (another port of 127.0.0.1: same site, other
  origin) that posts to the console is refused and the session stands;
- an operator cannot reach the admin screen; an admin can;
- sign-out ends the session;
- axe-core finds no serious or critical WCAG 2.2 AA violation on any screen;
- nothing is left in the browser's storage.

Screenshots of each screen go to DIR. Prints a JSON summary on standard
output.
"""

import http.server
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def fail(msg):
    print(f"console-browser: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def browser(cfg, profile):
    opts = webdriver.ChromeOptions()
    opts.binary_location = cfg["chromium"]
    for a in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(cfg["chromedriver"]), options=opts)


class Walk:
    def __init__(self, cfg, drv):
        self.cfg = cfg
        self.drv = drv
        self.base = cfg["base"]
        self.axe_js = open(cfg["axe"], encoding="utf-8").read()
        self.summary = {"screens": [], "axe": {}}

    def go(self, path):
        self.drv.get(self.base + path)

    def wait(self, cond, what, secs=10):
        try:
            return WebDriverWait(self.drv, secs).until(cond)
        except Exception:
            fail(f"timed out waiting for {what} (at {self.drv.current_url})")

    def shot(self, name):
        path = f"{self.cfg['shots']}/{name}.png"
        self.drv.save_screenshot(path)
        self.summary["screens"].append(name)
        self.axe(name)

    def axe(self, name):
        # Injected through WebDriver, which the page's CSP does not govern.
        self.drv.execute_script(self.axe_js)
        result = self.drv.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))))"
            ".catch(e => done({error: String(e)}));",
            AXE_TAGS,
        )
        check(isinstance(result, list), f"axe-core did not run on {name}: {result}")
        self.summary["axe"][name] = result
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        check(not bad, f"axe-core: serious or critical violations on {name}: {bad}")

    def sign_in(self, who):
        self.go("/console/sign-in")
        self.wait(EC.presence_of_element_located((By.ID, "name")), "the sign-in form")
        self.drv.find_element(By.ID, "name").send_keys(who["name"])
        self.drv.find_element(By.ID, "password").send_keys(who["password"])
        self.drv.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
        self.wait(EC.presence_of_element_located((By.ID, "accepted-total")), "the dashboard after sign-in")

    def sign_out(self):
        self.drv.find_element(By.CSS_SELECTOR, "form[action='/console/sign-out'] button").click()
        self.wait(EC.presence_of_element_located((By.ID, "password")), "the sign-in page after sign-out")

    def number(self, element_id):
        text = self.drv.find_element(By.ID, element_id).text.strip()
        try:
            return float(text)
        except ValueError:
            fail(f"#{element_id} is not a number: {text!r}")

    def submit_through_the_api(self, body, content_type="application/edi-x12"):
        req = urllib.request.Request(
            self.base + "/v1/transactions",
            data=body.encode(),
            headers={
                "Authorization": "Bearer " + self.cfg["partner_key"],
                "Content-Type": content_type,
            },
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            check(r.status == 202, f"the submission was answered {r.status}")
            return json.loads(r.read())["transactionId"]

    def visited(self):
        self.summary.setdefault("urls", []).append(self.drv.current_url)

    def open_transaction(self, tid, status):
        """Finds `tid` through the search page and waits (reloading) until
        the workers have made it `status`."""
        self.go("/console/search")
        self.wait(EC.presence_of_element_located((By.ID, "id")), "the search page")
        box = self.drv.find_element(By.ID, "id")
        box.clear()
        box.send_keys(tid)
        box.submit()
        self.wait(EC.url_contains("/console/transactions/"), "the transaction page")
        self.visited()
        deadline = time.time() + 30
        while self.drv.find_element(By.ID, "status").text.strip() != status:
            check(time.time() < deadline, f"{tid} never became {status}")
            time.sleep(0.5)
            self.drv.refresh()

    def storage_is_empty(self, where):
        # htmx 2 keeps the current path (never PHI: console URLs hold ids
        # only) in sessionStorage; its history cache, which would hold the
        # page itself, is off and must stay empty.
        local, session, cookie = self.drv.execute_script(
            "const all = s => Object.fromEntries(Object.keys(s).map(k => [k, s.getItem(k)]));"
            "return [all(localStorage), all(sessionStorage), document.cookie]"
        )
        check(local == {} and cookie == "", f"browser storage after {where}: {local}, document.cookie {cookie!r}")
        path = session.pop("htmx-current-path-for-history", "/console")
        check(session == {} and path.startswith("/console") and "?" not in path,
              f"sessionStorage after {where}: {session}, path {path!r}")


class Attacker(http.server.BaseHTTPRequestHandler):
    """Another origin (another port on 127.0.0.1) with a form that posts
    to the console's sign-out as soon as it loads."""

    target = ""

    def do_GET(self):
        page = (
            "<!doctype html><html lang=en><title>elsewhere</title>"
            f"<form id=f method=post action='{self.target}/console/sign-out'></form>"
            "<script>document.getElementById('f').submit()</script></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass


def main():
    cfg = json.load(sys.stdin)
    profile = tempfile.mkdtemp(prefix="clearway-chromium-")
    drv = browser(cfg, profile)
    w = Walk(cfg, drv)
    try:
        w.go("/console")
        w.wait(EC.presence_of_element_located((By.ID, "password")), "a redirect to sign-in")
        w.shot("sign-in")

        # A wrong password: announced, no session.
        drv.find_element(By.ID, "name").send_keys(cfg["operator"]["name"])
        drv.find_element(By.ID, "password").send_keys("not the password at all")
        drv.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
        alert = w.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")), "the failure message")
        check("do not match" in alert.text, f"failure message: {alert.text!r}")
        check(not drv.get_cookies(), "a failed sign-in set a cookie")
        w.shot("sign-in-failed")

        w.sign_in(cfg["operator"])
        cookies = drv.get_cookies()
        check(len(cookies) == 1, f"cookies: {[c['name'] for c in cookies]}")
        c = cookies[0]
        check(c["name"] == "__Host-clearway_session", f"cookie name {c['name']}")
        check(c["secure"] and c["httpOnly"] and c.get("sameSite") == "Strict" and c["path"] == "/",
              f"cookie attributes {c}")
        check("domain" not in c or c["domain"] in ("127.0.0.1", ""), f"cookie domain {c.get('domain')}")
        w.storage_is_empty("sign-in")
        w.shot("dashboard")

        # Live figures: a submission shows up without reloading the page.
        before = w.number("accepted-total")
        good = w.submit_through_the_api(cfg["x12_good"])
        w.wait(lambda d: w.number("accepted-total") >= before + 1, "the dashboard to refresh by itself", secs=20)
        w.summary["accepted"] = [before, w.number("accepted-total")]
        check(drv.current_url == cfg["base"] + "/console", f"the page moved: {drv.current_url}")
        bad = w.submit_through_the_api(cfg["x12_bad"])

        # The transaction, masked; then revealed with a reason.
        marker = cfg["marker"]
        w.open_transaction(good, "accepted")
        check(marker not in drv.page_source, "the marker is shown before any reveal")
        segs = drv.find_elements(By.CSS_SELECTOR, "ol.x12 li.seg")
        check(len(segs) > 20, f"the viewer shows {len(segs)} segments")
        check(drv.find_elements(By.CSS_SELECTOR, ".masked"), "nothing is masked")
        check(drv.find_elements(By.CSS_SELECTOR, ".claim-status"), "no claim status pinned to its CLM")
        w.shot("transaction")
        drv.find_element(By.ID, "reason").send_keys("checking the subscriber name the payer queried")
        drv.find_element(By.CSS_SELECTOR, "form.reveal button[type=submit]").click()
        w.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "p.revealed")), "the revealed view")
        check(marker in drv.page_source, "the revealed view does not show the marker")
        w.visited()
        w.shot("transaction-revealed")
        w.summary["revealed"] = True

        # The 999's error, on its element.
        w.open_transaction(bad, "rejected")
        errs = [e.text for e in drv.find_elements(By.CSS_SELECTOR, ".el-error")]
        check(any(t.startswith("DMG03") and "IK4 7" in t for t in errs), f"the DMG03 error is not pinned: {errs}")
        w.shot("transaction-999")
        w.storage_is_empty("a reveal")
        check(all(marker not in u for u in w.summary["urls"]), f"the marker in a URL: {w.summary['urls']}")

        # A dead letter: listed, dry run, replayed by a job.
        poison = w.submit_through_the_api(cfg["fhir_poison"], "application/fhir+json")
        deadline = time.time() + 30
        w.go("/console/dead-letters")
        while poison not in drv.page_source:
            check(time.time() < deadline, "the poison transaction never reached the dead letters")
            time.sleep(0.5)
            drv.refresh()
        w.shot("dead-letters")
        drv.find_element(By.ID, "dry-run").click()
        summary = w.wait(EC.presence_of_element_located((By.ID, "dry-run-summary")), "the dry run")
        check("re-queue 1 of 1" in summary.text, f"dry run: {summary.text!r}")
        w.shot("dead-letters-dry-run")
        drv.find_element(By.ID, "reason").send_keys("the payer endpoint is reachable again")
        drv.find_element(By.CSS_SELECTOR, "form[action='/console/dead-letters/replay'] button").click()
        w.wait(EC.url_contains("/console/replays/"), "the replay job's page")
        w.wait(EC.text_to_be_present_in_element((By.ID, "replay-state"), "done"), "the replay to finish", secs=30)
        check(drv.find_element(By.ID, "replay-replayed").text == "1", "the job did not replay the dead letter")
        w.shot("replay")
        w.summary["replayed"] = poison

        # Subscribed systems (none configured here): the page and its axe run.
        w.go("/console/destinations")
        w.shot("systems")

        # A report of the analytics export (exported every second here).
        deadline = time.time() + 60
        w.go("/console/reports/acceptance")
        while not drv.find_elements(By.CSS_SELECTOR, "main table"):
            check(time.time() < deadline, "the acceptance report never had rows")
            time.sleep(1)
            drv.refresh()
        w.shot("report")

        # The operator cannot reach the admin screen.
        links = [a.get_attribute("href") for a in drv.find_elements(By.CSS_SELECTOR, "nav a")]
        check(not any(h.endswith("/console/admin") for h in links), f"an operator sees admin links: {links}")
        w.go("/console/admin")
        w.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "403"), "the admin screen to be refused")
        w.shot("refused")

        # A cross-origin form posting to the console is refused; the session stands.
        Attacker.target = cfg["base"]
        evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        drv.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        w.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "403"), "the cross-origin post to be refused")
        evil.shutdown()
        w.go("/console")
        w.wait(EC.presence_of_element_located((By.ID, "accepted-total")), "the dashboard, still signed in")
        w.summary["cross_origin_refused"] = True

        w.sign_out()
        check(not drv.get_cookies(), "sign-out left a cookie")
        w.go("/console")
        w.wait(EC.presence_of_element_located((By.ID, "password")), "sign-in after sign-out")

        # An admin reaches the admin screen.
        w.sign_in(cfg["admin"])
        links = [a.get_attribute("href") for a in drv.find_elements(By.CSS_SELECTOR, "nav a")]
        check(any(h.endswith("/console/admin") for h in links), f"no admin link for an admin: {links}")
        w.go("/console/admin")
        w.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Administration"), "the admin screen")
        body = drv.find_element(By.TAG_NAME, "main").text
        check(cfg["operator"]["name"] in body, "the operator's account is not listed")
        check("$argon2" not in drv.page_source, "a password hash on the page")
        w.shot("admin")
        w.sign_out()

        # An auditor reads the log, the reveal's reason among it.
        w.sign_in(cfg["auditor"])
        w.go("/console/audit")
        w.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Audit"), "the audit screen")
        page = drv.page_source
        check("console.reveal" in page, "the reveal is not in the log")
        check("checking the subscriber name the payer queried" in page, "the reveal's reason is not shown")
        check(marker not in page, "the marker on the audit screen")
        w.shot("audit")
        w.sign_out()
        w.storage_is_empty("the whole session")
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(w.summary))


if __name__ == "__main__":
    main()
