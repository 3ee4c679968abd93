#!/usr/bin/python3
"""Drives the vault's fleet view in a real browser for ConsoleBrowserEndToEndTests, with console_browser.py's
browser and helpers: an anonymous visit ends at /login; the administrator logs in with a password; the page lists
each --relay NAME=COUNT with COUNT machines and a vault lag, and the GRS line; the login and fleet pages fit a
390 px phone; logging out ends the session, on the vault and not only in the browser (the old cookie, put back,
opens nothing). Writes vault-login.png, fleet.png and fleet-phone.png (vault-failure.png when a check fails) to
--artifacts; prints "screenshot PATH" for each and "ok" when every check passed, like console_browser.py."""

import re
import sys

from console_browser import By, Console, arguments, check, drive, say

GRS = "Secondary copy set (GRS): "
# The page's durations: "45 s", "12 min", "3 h 20 min", "2 d 4 h"; a points-waiting note may follow.
LAG = re.compile(r"\d+ (s|min|h \d+ min|d \d+ h)(; .*)?")


class Fleet(Console):
    failure_shot = "vault-failure"

    def run(self):
        a = self.args
        password = open(a.password_file, encoding="utf-8").read().strip()

        self.get("/")
        check(self.path() == "/login", f"an anonymous visit to the fleet page ends at {self.path()}, not /login")
        self.fits_a_phone("vault login")
        self.screenshot("vault-login")
        status = self.log_in(a.admin, password)
        check(self.path() == "/", f"logging in to the vault ends at {self.path()} (status {status}): {self.text[:300]}")

        # Each relay's row, by the relay's name (its first cell is "NAME ID"), read under the table's headings.
        headings = [th.text for th in self.driver.find_elements(By.CSS_SELECTOR, "table th")]
        check("Machines" in headings and "Vault lag" in headings, f"the fleet table's headings are {headings}")
        rows = {}
        for tr in self.driver.find_elements(By.CSS_SELECTOR, "table tr"):
            cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            if cells:
                rows[cells[0].split(" ")[0]] = dict(zip(headings, cells))
        for relay in a.relay:
            name, count = relay.split("=")
            row = rows.get(name)
            check(row, f"the fleet page lists no relay {name}: {self.text[:800]}")
            machines = f"{count} machine" + ("" if count == "1" else "s")
            check(row["Machines"] == machines, f"relay {name} shows {row['Machines']!r}, not {machines!r}")
            check(LAG.fullmatch(row["Vault lag"]), f"relay {name} shows no vault lag: {row['Vault lag']!r}")
        grs = [p.text for p in self.driver.find_elements(By.TAG_NAME, "p") if p.text.startswith(GRS)]
        check(grs and len(grs[0]) > len(GRS), f"the fleet page of a GRS vault has no secondary copy line: {self.text[:800]}")
        self.fits_a_phone("fleet")
        self.screenshot("fleet")
        self.screenshot("fleet-phone", width=390, mobile=True)

        # Logging out leads to the login form, and the page with it; the old session cookie opens nothing either.
        old = self.driver.get_cookie("outpost_session")
        check(old, "the browser holds no session cookie after logging in")
        self.submit(self.driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button"))
        check(self.path() == "/login", f"logging out ends at {self.path()}, not /login")
        self.get("/")
        check(self.path() == "/login", f"the fleet page after logging out ends at {self.path()}, not /login")
        self.driver.add_cookie({k: old[k] for k in ["name", "value", "path", "secure", "httpOnly"] if k in old})
        self.get("/")
        check(self.path() == "/login", f"the logged-out session's cookie still opens the fleet page ({self.path()})")
        check(not self.too_wide, "; ".join(self.too_wide))
        say("ok")


def main():
    parser = arguments("Walks the vault's fleet view.")
    parser.add_argument("--relay", action="append", required=True, help="NAME=COUNT: a relay the page lists, with COUNT machines")
    return drive(Fleet, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
