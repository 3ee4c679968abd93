#!/usr/bin/python3
"""Drives the relay's web console in a real browser (Debian's chromium, headless, through chromium-driver and
python3-selenium) for ConsoleBrowserEndToEndTests: logs in, reads the overview, a machine, a recovery point's
folders, downloads a file (compared byte for byte with its source), opens a job with failed files, watches an
alert open and clear, and checks that a POST without a session (401) and forms with a removed or altered CSRF
token (403) are refused. Writes a PNG of each page to --artifacts.

The test drives it over stdin and stdout, one line each way:
  stdout "screenshot PATH"      a page's PNG was written
  stdout "downloaded PATH"      the file the browser saved
  stdout "step clear-alert"     the alert was seen open; the test clears it, then writes "go" on stdin
  stdout "ok"                   every check passed (exit 0)
A failed check prints "FAIL: what" on stderr and exits 1; a missing package exits 3 naming it.

The relay's certificate is self-signed: chromium pins it by its public key (--ignore-certificate-errors-spki-list
with the SHA-256 of the certificate's SubjectPublicKeyInfo, read from --cert), so any other certificate is still
refused; Python's own requests verify against that certificate alone.

vault_console_browser.py walks the vault's fleet view with this file's browser and helpers (`arguments`, `drive`,
`Console`)."""

import argparse
import base64
import hashlib
import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    print("MISSING python3-selenium: sudo apt-get install -y python3-selenium", file=sys.stderr)
    sys.exit(3)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Failure(Exception):
    pass


def check(condition, what):
    if not condition:
        raise Failure(what)


def say(line):
    print(line, flush=True)


def spki_sha256(pem_path):
    """Base64 of SHA-256 over the certificate's SubjectPublicKeyInfo (what chromium's SPKI pin list takes)."""
    der = ssl.PEM_cert_to_DER_cert(open(pem_path, encoding="ascii").read())

    def tlv(buf, at):
        length, head = buf[at + 1], at + 2
        if length & 0x80:
            n = length & 0x7F
            length, head = int.from_bytes(buf[head:head + n], "big"), head + n
        return head, head + length  # content start, end

    cert_start, _ = tlv(der, 0)
    tbs_start, _ = tlv(der, cert_start)
    at = tbs_start
    if der[at] == 0xA0:  # [0] version
        at = tlv(der, at)[1]
    for _ in range(5):  # serial, signature algorithm, issuer, validity, subject
        at = tlv(der, at)[1]
    spki_end = tlv(der, at)[1]
    return base64.b64encode(hashlib.sha256(der[at:spki_end]).digest()).decode()


def deadline_wait(seconds, what, condition, every=0.05):
    """Polls `condition` until it returns something true, at most `seconds`."""
    until = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > until:
            raise Failure(f"{what} did not happen within {seconds} s")
        time.sleep(every)


class Console:
    """The browser, its helpers and the relay console's walk (`run`); vault_console_browser.py walks the vault's."""

    failure_shot = "failure"

    def __init__(self, args, workdir):
        self.base = args.url.rstrip("/")
        self.args = args
        self.downloads = getattr(args, "downloads", None) or os.path.join(workdir, "downloads")
        os.makedirs(self.downloads, exist_ok=True)
        os.makedirs(args.artifacts, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-crash-reporter",
            f"--user-data-dir={os.path.join(workdir, 'profile')}",
            f"--ignore-certificate-errors-spki-list={spki_sha256(args.cert)}",
            "--window-size=1280,900", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-sync", "--disable-component-update",
        ]:
            options.add_argument(flag)
        options.add_experimental_option("prefs", {
            "download.default_directory": self.downloads, "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        })
        # The performance log carries each response's status, which the page itself does not show.
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        # Chromium's own files (crash reports, caches) in the temporary folder too, not in the user's home.
        env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(workdir, "config"), XDG_CACHE_HOME=os.path.join(workdir, "cache"))
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, env=env), options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": self.downloads, "eventsEnabled": True,
        })
        self.tls = ssl.create_default_context(cafile=args.cert)
        self.tls.check_hostname = False  # the certificate names "localhost"; it alone is trusted
        self.too_wide = []

    # MARK: the browser

    def get(self, path):
        self.driver.get(self.base + path)

    @property
    def text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def path(self):
        return urllib.parse.urlsplit(self.driver.current_url).path

    def statuses(self):
        """(url, status) of each document the browser received since the last call."""
        out = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.responseReceived" and message["params"].get("type") == "Document":
                response = message["params"]["response"]
                out.append((response["url"], response["status"]))
        return out

    def submit(self, button):
        """Clicks a form's button and waits for the next document; returns its status."""
        self.statuses()
        old = self.driver.find_element(By.TAG_NAME, "html")
        button.click()

        def landed():
            try:
                old.tag_name
                return False
            except WebDriverException:
                return True

        deadline_wait(15, "the form's answer", landed)
        return deadline_wait(5, "the form's answer in the log", self.statuses)[-1][1]

    def screenshot(self, name, width=1280, mobile=False):
        """A PNG of the whole page (not just the window) at `width` CSS pixels."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile,
        })
        try:
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        path = os.path.join(self.args.artifacts, name + ".png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        say(f"screenshot {path}")

    def overflow_at_phone_width(self):
        """How far the page is wider than a 390 px phone (0: it fits; tables scroll inside their own box)."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True,
        })
        try:
            return self.driver.execute_script("return document.documentElement.scrollWidth") - 390
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def fits_a_phone(self, page):
        """Notes a page wider than a phone; reported (and failed) once every page was seen."""
        extra = self.overflow_at_phone_width()
        if extra > 0:
            self.too_wide.append(f"the {page} page is {extra} px wider than a 390 px phone")

    def log_in(self, name, password):
        """Fills the login form and sends it; returns the answer's status."""
        self.driver.find_element(By.NAME, "name").send_keys(name)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        return self.submit(self.driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button"))

    # MARK: outside the browser

    def post(self, path, body, cookie=None):
        """A POST from Python (not the browser), verified against the relay's certificate; returns the status."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if cookie:
            headers["Cookie"] = cookie
        request = urllib.request.Request(self.base + path, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, context=self.tls) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def session_cookie(self):
        c = self.driver.get_cookie("outpost_session")
        return f"outpost_session={c['value']}" if c else None

    # MARK: the walk

    def run(self):
        a = self.args
        password = open(a.password_file, encoding="utf-8").read().strip()

        # Without a session every page leads to the login form.
        self.get("/")
        check(self.path() == "/login", f"an anonymous visit to / ends at {self.path()}, not /login")
        header = self.driver.find_element(By.TAG_NAME, "header").text
        check("Log out" not in header and "Overview" not in header, f"the login page's header offers {header!r} without a session")
        self.fits_a_phone("login")
        self.screenshot("login")
        status = self.log_in(a.admin, password)
        check(self.path() == "/", f"logging in ends at {self.path()} (status {status}): {self.text[:300]}")
        cookie = self.driver.get_cookie("outpost_session")
        check(cookie and cookie.get("httpOnly") and cookie.get("secure"), f"the session cookie is not Secure and HttpOnly: {cookie}")

        # The overview lists both machines, and the open alert.
        body = self.text
        for m in a.machine:
            check(self.driver.find_elements(By.LINK_TEXT, m), f"the overview has no link to machine {m}: {body[:500]}")
        check(a.alert_kind in body and a.alert_subject in body, f"the overview shows no open {a.alert_kind} alert: {body[:800]}")
        self.fits_a_phone("overview")
        self.screenshot("overview")
        self.screenshot("overview-phone", width=390, mobile=True)

        # A machine, one of its recovery points, down to the folder that holds the file.
        self.driver.find_element(By.LINK_TEXT, a.machine[0]).click()
        check(self.path() == f"/machines/{a.machine[0]}", f"the machine link led to {self.path()}")
        check("Recovery points" in self.text, f"machine page: {self.text[:300]}")
        self.fits_a_phone("machine")
        self.screenshot("machine")
        points = self.driver.find_elements(By.CSS_SELECTOR, "a[href^='/points/']")
        check(points, f"machine {a.machine[0]} lists no recovery point: {self.text[:500]}")
        points[0].click()
        check(self.path().endswith("/browse"), f"the point's link led to {self.path()}")
        folder, name = os.path.split(a.download)
        for part in [p for p in folder.split("/") if p]:
            links = self.driver.find_elements(By.LINK_TEXT, part + "/")
            check(links, f"the folder {part}/ of {folder} is not listed: {self.text[:500]}")
            links[0].click()
        check(name in self.text, f"{folder} does not list {name}: {self.text[:500]}")
        self.fits_a_phone("browse")
        self.screenshot("browse")

        # The file, downloaded by the browser, is the source's bytes.
        self.driver.find_element(By.LINK_TEXT, name).click()
        saved = os.path.join(self.downloads, name)
        expected = open(a.download, "rb").read()

        def complete():
            partial = [f for f in os.listdir(self.downloads) if f.endswith(".crdownload")]
            return not partial and os.path.exists(saved) and os.path.getsize(saved) == len(expected)

        deadline_wait(30, f"the download of {name}", complete)
        check(open(saved, "rb").read() == expected, f"the downloaded {name} differs from {a.download}")
        say(f"downloaded {saved}")

        # The job with the failed files, from the overview's recent jobs.
        self.get("/")
        self.driver.find_element(By.CSS_SELECTOR, f"a[href='/jobs/{a.job}']").click()
        check(self.path() == f"/jobs/{a.job}", f"the job link led to {self.path()}")
        failed = [li.text for li in self.driver.find_elements(By.CSS_SELECTOR, "ul li")]
        check(any(a.failed_path in f and a.failed_reason in f for f in failed),
              f"job {a.job} does not list {a.failed_path} ({a.failed_reason}) as failed: {failed}")
        self.fits_a_phone("job")
        self.screenshot("job")

        # The alert, open; the test clears it; a reload shows it cleared.
        self.driver.find_element(By.LINK_TEXT, "Alerts").click()
        rows = [r.text for r in self.driver.find_elements(By.CSS_SELECTOR, "tr.late")]
        check(any(a.alert_subject in r and "open" in r for r in rows), f"the alerts page shows no open {a.alert_subject}: {rows}")
        self.fits_a_phone("alerts")
        self.screenshot("alerts")
        say("step clear-alert")
        answer = sys.stdin.readline().strip()
        check(answer == "go", f"the test answered {answer!r} instead of go")
        self.driver.refresh()
        rows = [r.text for r in self.driver.find_elements(By.CSS_SELECTOR, "tr")]
        check(any(a.alert_subject in r and "cleared" in r for r in rows), f"the alerts page does not show {a.alert_subject} cleared: {rows}")
        check(not self.driver.find_elements(By.CSS_SELECTOR, "tr.late"), "a cleared alert is still marked open")
        self.screenshot("alerts-cleared")
        self.get("/")
        check(a.alert_subject not in self.text.split("Machines")[0], f"the overview still shows the alert open: {self.text[:500]}")

        # Forms whose CSRF token was altered, then removed, are refused (403) and change nothing.
        form = f"form[action='/machines/{a.machine[0]}/backup-now']"
        self.driver.execute_script(
            "document.querySelector(arguments[0] + ' input[name=csrf]').value = '0'.repeat(64)", form)
        status = self.submit(self.driver.find_element(By.CSS_SELECTOR, form + " button"))
        check(status == 403, f"a backup-now with an altered CSRF token answered {status}: {self.text[:300]}")
        self.get("/")
        self.driver.execute_script("document.querySelector(arguments[0] + ' input[name=csrf]').remove()", form)
        status = self.submit(self.driver.find_element(By.CSS_SELECTOR, form + " button"))
        check(status == 403, f"a backup-now without a CSRF token answered {status}: {self.text[:300]}")
        # The same from Python with the browser's session cookie and no token, for the status alone.
        check(self.post("/check", "", cookie=self.session_cookie()) == 403, "a check without a CSRF token was not refused with 403")

        # Without a session (the cookie dropped from the browser), an action answers 401 and a page leads to log in.
        self.get("/")
        self.driver.delete_all_cookies()
        status = self.submit(self.driver.find_element(By.CSS_SELECTOR, "form[action='/check'] button"))
        check(status == 401, f"a check without a session answered {status}: {self.text[:300]}")
        check(self.post("/forward-now", "csrf=" + "0" * 64) == 401, "a forward-now without a session was not refused with 401")
        self.get("/")
        check(self.path() == "/login", f"a page without a session ends at {self.path()}, not /login")
        check(not self.too_wide, "; ".join(self.too_wide))
        say("ok")


def arguments(description):
    """The options every walk takes; a walk adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True, help="the console, https://127.0.0.1:PORT")
    parser.add_argument("--cert", required=True, help="the server's certificate (PEM), pinned")
    parser.add_argument("--admin", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--artifacts", required=True, help="where the screenshots go")
    return parser


def drive(walk, args):
    """Runs `walk` (Console or a subclass) over a fresh browser; the exit status (0 passed, 1 failed, 3 missing)."""
    # A process group of its own, which chromedriver and chromium join: the test kills the group on a timeout.
    os.setpgid(0, 0)
    for tool, package in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]:
        if not os.access(tool, os.X_OK):
            print(f"MISSING {package}: sudo apt-get install -y {package}", file=sys.stderr)
            return 3
    workdir = tempfile.mkdtemp(prefix="outpost-browser-")
    console = None
    try:
        console = walk(args, workdir)
        console.run()
        return 0
    except (Failure, WebDriverException) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        if console:
            try:
                console.screenshot(console.failure_shot)
            except Exception:
                pass
        return 1
    finally:
        if console:
            console.driver.quit()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = arguments("Walks the relay's console.")
    parser.add_argument("--machine", action="append", required=True, help="machines the overview lists; the first is browsed")
    parser.add_argument("--download", required=True, help="a file of the first machine's newest point, by its absolute path")
    parser.add_argument("--job", required=True, help="a job with failed files")
    parser.add_argument("--failed-path", required=True)
    parser.add_argument("--failed-reason", required=True)
    parser.add_argument("--alert-kind", required=True)
    parser.add_argument("--alert-subject", required=True)
    parser.add_argument("--downloads", help="where the browser saves files (default: a temporary folder)")
    return drive(Console, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
