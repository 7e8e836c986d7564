"""The browser walk: a real Chromium through the portal and the console.

An applicant signs up, applies (seeing the form's errors first, then checking the answers),
and sees the rule results; an administrator funds the programme and approves; the applicant
creates a key, sees it once, makes a metered call with it and sees the balance drop. Every
page on the way is checked with axe-core for WCAG 2.2 A and AA (zero violations allowed) and
photographed into the screenshot folder.

The applicant confirms their email address with the code from the mail folder, and at the end
resets their password with the link from it.

Run by tests/api/browser.rs against a server it started:
    python3 tests/browser/walk.py BASE_URL ADMIN_EMAIL PASSWORD SCREENSHOT_DIR ADVISER_EMAIL ASSESSOR_EMAIL MAIL_DIR STRIPE_URL

The applicant also buys credit on Stripe's page (the test's fake Stripe serves it for
checkout.stripe.com and sends the signed webhook), books an adviser's consulting session, and
enters a challenge the administrator creates.
"""

import datetime
import email as email_lib
import email.policy
import json
import time
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright, expect

HERE = pathlib.Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
# A time as the pages write it: "6 December 2026, 11:18am", "1 July 2026, midday".
UK_TIME = r"\d{1,2} (January|February|March|April|May|June|July|August|September|October|November|December) \d{4}, (\d{1,2}:\d{2}[ap]m|midday|midnight)"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


class Walk:
    def __init__(self, page, base, shots):
        self.page = page
        self.base = base
        self.shots = shots
        self.step = 0
        self.checked = []

    def check(self, name):
        """Screenshot and axe-core on the page as it is now."""
        self.step += 1
        self.page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}.png"), full_page=True)
        # Evaluated through the DevTools protocol: the pages' CSP (rightly) refuses a script
        # tag that is not the service's own, and stays in force for everything else.
        self.page.evaluate(AXE.read_text())
        result = self.page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG
        )
        violations = result["violations"]
        if violations:
            for v in violations:
                nodes = "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:5])
                print(f"axe: {name}: {v['id']} ({v['impact']}): {v['help']} at {nodes}")
            raise AssertionError(f"{len(violations)} accessibility violations on {name}")
        self.reflows(name)
        self.checked.append(name)

    def reflows(self, name):
        """WCAG 1.4.10: at 320 CSS pixels the page does not scroll sideways (a wide table
        scrolls inside its own box); axe does not check this."""
        size = self.page.viewport_size
        self.page.set_viewport_size({"width": 320, "height": 800})
        try:
            width = self.page.evaluate("document.documentElement.scrollWidth")
            if width > 320:
                self.page.screenshot(path=str(self.shots / f"{self.step:02d}-{name}-320.png"), full_page=True)
                wide = self.page.evaluate(
                    """() => [...document.querySelectorAll('body *')]
                        .filter(e => e.getBoundingClientRect().right > 320.5
                                  && !e.closest('.voucherd-table-scroll'))
                        .slice(0, 5).map(e => e.tagName + '.' + e.className)"""
                )
                raise AssertionError(f"{name} is {width} px wide at 320 px: {wide}")
        finally:
            self.page.set_viewport_size(size)

    def go(self, path):
        self.page.goto(self.base + path)

    def sign_in(self, email, password):
        self.go("/sign-in")
        self.page.get_by_label("Email address").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()

    def sign_out(self):
        self.page.get_by_role("button", name="Sign out").click()
        expect(self.page.get_by_role("heading", level=1)).to_contain_text("AI voucher")


def metered_call(base, key):
    body = json.dumps({
        "model": "test-model",
        "messages": [{"role": "user", "content": "Summarise our returns policy."}],
        "max_completion_tokens": 50,
    }).encode()
    req = urllib.request.Request(
        base + "/v1/chat/completions",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200, resp.status
        return json.load(resp)


def mail_to(mail_dir, recipient, subject_start, after=0.0, wait_s=30):
    """The newest email to `recipient` whose subject starts with `subject_start`, written after
    `after` (seconds since the epoch): (subject, plain-text body). The worker delivers the
    outbox into the folder every second; this waits for it, up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for f in pathlib.Path(mail_dir).glob("*.eml"):
            if f.stat().st_mtime < after:
                continue
            msg = email_lib.message_from_bytes(f.read_bytes(), policy=email.policy.default)
            if recipient in str(msg["To"]) and str(msg["Subject"]).startswith(subject_start):
                found.append((f.stat().st_mtime, msg))
        if found:
            msg = max(found, key=lambda m: m[0])[1]
            return str(msg["Subject"]), msg.get_body(preferencelist=("plain",)).get_content()
        if time.monotonic() > deadline:
            raise AssertionError(f"no email to {recipient} starting {subject_start!r} in {mail_dir}")
        time.sleep(0.2)


def main():
    base, admin_email, admin_password, shots = sys.argv[1:5]
    # Staff who sign in with the administrator's password: an adviser and an assessor.
    adviser_email, assessor_email, mail_dir, stripe_base = sys.argv[5:9]
    shots = pathlib.Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    email, password = "owner@widget-analytics.example", "a long and memorable passphrase"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        # Script errors and CSP refusals fail the walk; a form answered 422 with its errors
        # (as GOV.UK forms are) is logged by Chromium as a failed resource and is expected.
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "console",
            lambda m: errors.append(m.text)
            if m.type == "error" and "status of 422" not in m.text
            else None,
        )
        w = Walk(page, base, shots)

        def stripe_page(route):
            """Stripe's hosted page is the fake's: fetched from it and answered as Stripe."""
            path = urllib.parse.urlsplit(route.request.url).path
            route.fulfill(response=route.fetch(url=stripe_base.rstrip("/") + path, max_redirects=0))

        context.route("https://checkout.stripe.com/**", stripe_page)
        today = datetime.date.today()

        # Error pages are pages too: titled, in English, accessible and reflowing.
        w.go("/no-such-page")
        expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
        assert page.evaluate("document.documentElement.lang") == "en"
        w.check("not-found")
        w.go("/public/reports/latest")
        expect(page.get_by_role("heading", level=1)).to_have_text("There is no public summary yet")
        w.check("public-summary-missing")
        # Chromium logs each of these documents' own 404 as a failed resource: expected here.
        assert len([e for e in errors if "status of 404" in e]) == 2, errors
        errors.clear()
        # The start page, and an account.
        w.go("/")
        w.check("start")
        page.get_by_role("button", name="Start now").click()
        w.check("sign-up")
        page.get_by_label("Full name").fill("Ada Owner")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Create a password").fill(password)
        page.get_by_role("button", name="Create account").click()
        # Unconfirmed: the code from the email first.
        expect(page).to_have_url(re.compile(r"/verify-email$"))
        w.check("verify-email")
        page.get_by_label("Confirmation code").fill("000000")
        page.get_by_role("button", name="Confirm", exact=True).click()
        expect(page.locator("#code-error")).to_be_visible()
        w.check("verify-email-wrong-code")
        subject, _ = mail_to(mail_dir, email, "Your confirmation code is")
        code = subject.rsplit(" ", 1)[-1]
        page.get_by_label("Confirmation code").fill(code)
        page.get_by_role("button", name="Confirm", exact=True).click()
        expect(page).to_have_url(re.compile(r"/portal$"))
        w.check("dashboard-empty")

        # The application: errors first, then the answers, then checking them.
        page.get_by_role("button", name="Apply for a voucher").click()
        w.check("apply")
        page.get_by_role("button", name="Continue").click()
        expect(page.locator(".govuk-error-summary")).to_be_visible()
        expect(page.locator("#company_number-error")).to_be_visible()
        w.check("apply-errors")
        page.get_by_label("Company registration number").fill("01234567")
        page.get_by_label("Company name").fill("Widget Analytics Ltd")
        page.get_by_label("Number of employees").fill("12")
        page.get_by_label("Annual turnover, in pounds").fill("900000")
        page.get_by_label("Balance sheet total, in pounds").fill("300000")
        page.get_by_label("Region").select_option("north_east")
        page.get_by_label("SIC code").fill("62012")
        trading = page.get_by_role("group", name="Date the company started trading")
        trading.get_by_label("Day").fill("1")
        trading.get_by_label("Month").fill("3")
        trading.get_by_label("Year").fill("2019")
        page.get_by_label("No", exact=True).check()
        page.get_by_label("Describe the work the voucher will pay for").fill(
            "Classify incoming customer emails and draft replies for review."
        )
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Check your answers before sending your application"
        )
        expect(page.locator(".govuk-summary-list")).to_contain_text("Widget Analytics Ltd")
        w.check("check-answers")
        page.get_by_role("button", name="Accept and send").click()
        expect(page.locator(".govuk-notification-banner")).to_contain_text("Application sent")
        expect(page.locator("table")).to_contain_text("passed")
        w.check("application-rule-results")
        w.sign_out()

        # The administrator funds the programme and approves, confirming first.
        w.sign_in(admin_email, admin_password)
        expect(page).to_have_url(re.compile(r"/console$"))
        w.check("console-queue")
        page.get_by_role("link", name="Programme fund").click()
        page.get_by_label("Amount, in pounds").fill("100000")
        page.get_by_label("Reference").fill("Grant letter GL-2026-01")
        page.get_by_role("button", name="Deposit").click()
        expect(page.locator(".govuk-summary-list")).to_contain_text("GL-2026-01")
        w.check("console-deposit-confirm")
        page.get_by_role("button", name="Confirm the deposit").click()
        expect(page.locator(".govuk-notification-banner")).to_contain_text("deposit was recorded")
        # Pounds and pence with thousands separators, never "£100000.00".
        expect(page.locator("main")).to_contain_text("£100,000.00")
        # The deposit is listed with its reference and UK date.
        expect(page.locator("table").last).to_contain_text("Grant letter GL-2026-01")
        expect(page.locator("table").last).to_contain_text(re.compile(UK_TIME))
        w.check("console-programme")
        page.get_by_role("link", name="Applications").click()
        page.get_by_role("link", name=re.compile("Widget Analytics Ltd")).click()
        w.check("console-application")
        page.get_by_label("Approve", exact=True).check()
        page.get_by_label("Voucher amount, in pounds (if approving)").fill("100")
        page.get_by_label("Reason, which the applicant will see").fill("Meets every rule.")
        page.get_by_role("button", name="Continue").click()
        w.check("console-confirm")
        page.get_by_role("button", name="Confirm and approve").click()
        expect(page.locator(".govuk-notification-banner")).to_contain_text("decision was recorded")
        w.check("console-decided")
        page.get_by_role("link", name="Audit log").click()
        expect(page.locator("table")).to_contain_text("application.approve")
        # Who acted, by name, not by id.
        expect(page.locator("table")).to_contain_text("(" + admin_email + ")")
        expect(page.locator("main")).to_contain_text(re.compile(r"Showing 1 to \d+ of \d+ entries"))
        # UK dates and times, not RFC 3339: "6 December 2026, 11:18am".
        expect(page.locator("table")).to_contain_text(re.compile(UK_TIME))
        expect(page.locator("table")).not_to_contain_text(re.compile(r"\d{4}-\d{2}-\d{2}T"))
        w.check("console-audit")
        page.get_by_role("link", name="Jobs").click()
        w.check("console-jobs")
        page.get_by_role("link", name="Accounts").click()
        expect(page.locator("body")).to_contain_text(email)
        w.check("console-users")
        page.get_by_role("link", name="Vouchers").click()
        page.get_by_label("Search by company name, registration number or reference").fill("01234567")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("table")).to_contain_text("01234567")
        # By a part of the name, in any case.
        page.get_by_label("Search by company name, registration number or reference").fill("widget anal")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("table")).to_contain_text("Widget Analytics Ltd")
        w.check("console-vouchers")
        page.get_by_role("link", name="Prices").click()
        expect(page.locator("table").first).to_contain_text("test-model")
        w.check("console-prices")
        page.get_by_role("link", name="Reports").click()
        w.check("console-reports")
        page.get_by_role("link", name="Incentives").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("ncentive")
        w.check("console-incentives")
        page.get_by_role("link", name="Challenges").click()
        w.check("console-challenges")
        w.go("/console/challenges/new")
        w.check("console-challenge-new")
        # A challenge open now (its opening may be past; it must close in the future).
        day = lambda d: (today + datetime.timedelta(days=d)).isoformat()
        page.get_by_label("Title").fill("Walk AI challenge")
        page.get_by_label("Description").fill("Use AI to cut the time small firms spend on invoices.")
        page.get_by_label("Small or medium-sized enterprise (SME)").check()
        page.get_by_label("Opens for entries").fill(day(-1) + " 09:00")
        page.get_by_label("Closes for entries").fill(day(30) + " 17:00")
        page.get_by_label("Assessors assigned").fill(day(31) + " 09:00")
        page.get_by_label("Assessment deadline").fill(day(40) + " 17:00")
        page.get_by_label("Decisions released").fill(day(45) + " 09:00")
        page.get_by_label("Criteria").fill("Innovation|10|3\nImpact|10|2")
        page.get_by_label("Assessors per entry").fill("1")
        page.get_by_label("Award pool, in pounds").fill("1,000")
        page.get_by_label("Awards, in pounds").fill("600\n400")
        page.get_by_label("Pilot places").fill("0")
        page.get_by_role("button", name="Create challenge").click()
        expect(page.locator(".govuk-notification-banner")).to_contain_text("The challenge was created")
        expect(page.locator("main")).to_contain_text(re.compile(UK_TIME))
        expect(page.locator("main")).to_contain_text("£1,000.00")
        w.check("console-challenge-created")
        w.sign_out()

        # The applicant's voucher: a key, shown once; a metered call; the balance drops.
        w.sign_in(email, password)
        page.locator("a[href^='/portal/vouchers/']").first.click()
        expect(page.locator("#voucher-available")).to_have_text("£100.00")
        voucher_url = page.url
        w.check("voucher")
        page.get_by_label("Name of a new key").fill("invoice assistant")
        page.get_by_role("button", name="Create key").click()
        key = page.locator("#new-key").inner_text().strip()
        assert key.startswith("vk_live_"), key
        expect(page.get_by_role("button", name="Copy key")).to_be_visible()
        w.check("key-shown-once")
        answer = metered_call(base, key)
        assert answer["usage"]["completion_tokens"] > 0, answer
        page.get_by_role("link", name="Back to the voucher").click()
        expect(page.locator("body")).not_to_contain_text(key)
        # Shown to the penny with separators; the exact figures ride along in <data value>.
        expect(page.locator("#voucher-available")).to_have_text(re.compile(r"^£\d{1,3}(,\d{3})*\.\d{2}$"))
        available = float(page.locator("#voucher-available data").get_attribute("value"))
        spent = float(page.locator("#voucher-spent data").get_attribute("value"))
        assert 0 < spent and available < 100 and abs(available + spent - 100) < 1e-6, (available, spent)
        expect(page.locator("svg.voucherd-chart").first).to_be_visible()
        w.check("voucher-after-call")
        page.get_by_role("button", name="Revoke key invoice assistant").click()
        w.check("revoke-confirm")
        page.get_by_role("button", name="Revoke the key").click()
        expect(page.locator(".govuk-notification-banner")).to_contain_text("revoked")
        with urllib.request.urlopen(urllib.request.Request(base + "/healthz")) as resp:
            assert resp.status == 200
        try:
            metered_call(base, key)
            raise AssertionError("a revoked key still worked")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
        page.get_by_role("link", name="Incentives on your voucher").click()
        w.check("voucher-incentives")

        # Credit bought on Stripe's page; the voucher page lists it once Stripe confirms.
        page.goto(voucher_url)
        page.locator("#top_up_amount").fill("25")
        page.get_by_role("button", name="Continue to payment").click()
        expect(page).to_have_url(re.compile(r"^https://checkout\.stripe\.com/c/pay/"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Pay £25.00")
        page.get_by_role("button", name="Pay").click()
        expect(page).to_have_url(re.compile(r"/portal\?"))
        expect(page.locator(".govuk-notification-banner")).to_contain_text("your payment was taken")
        w.check("paid")
        page.goto(voucher_url)
        expect(page.locator("#purchased-available")).to_have_text("£25.00")
        expect(page.locator("#top-ups")).to_contain_text("£25.00")
        expect(page.locator("#top-ups")).to_contain_text("paid")
        expect(page.locator("#top-ups")).to_contain_text(re.compile(UK_TIME))
        w.check("voucher-bought-credit")

        page.get_by_role("link", name="Technical consulting").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("consulting")
        w.check("voucher-consulting")

        # The administrator's challenge, entered.
        page.get_by_role("link", name="Challenges").click()
        w.check("challenges")
        page.get_by_role("link", name="Walk AI challenge").click()
        expect(page.locator("main")).to_contain_text(re.compile(UK_TIME))
        w.check("challenge")
        page.get_by_role("button", name="Send entry").click()
        expect(page.locator(".govuk-error-summary")).to_be_visible()
        w.check("challenge-entry-errors")
        page.get_by_label("Company registration number").fill("01234567")
        page.get_by_label("Organisation name").fill("Widget Analytics Ltd")
        page.get_by_label("Region").select_option("north_east")
        page.get_by_label("SIC code").fill("62012")
        page.get_by_label("Title of your entry").fill("Invoices read by AI")
        page.get_by_label("Summary of your entry").fill(
            "We read supplier invoices with a language model and post them to the ledger."
        )
        page.get_by_role("button", name="Send entry").click()
        expect(page.locator(".govuk-notification-banner")).to_contain_text("Your entry was sent")
        w.check("challenge-entered")
        w.sign_out()

        # The adviser's and the assessor's own pages.
        w.sign_in(adviser_email, admin_password)
        expect(page).to_have_url(re.compile(r"/advise$"))
        w.check("adviser")
        session_day = today + datetime.timedelta(days=14)
        page.get_by_label("Date").fill(session_day.isoformat())
        page.get_by_label("Start time (UK time)").fill("14:30")
        page.get_by_label("Length, in minutes").fill("60")
        page.get_by_role("button", name="Publish session").click()
        expect(page.locator(".govuk-notification-banner")).to_be_visible()
        # Shown in UK time as people say it.
        said = f"{session_day.day} {session_day.strftime('%B %Y')} at 2:30pm"
        expect(page.locator("main")).to_contain_text(said)
        w.check("adviser-published")
        w.sign_out()

        # The applicant books it from the voucher's consulting page.
        w.sign_in(email, password)
        page.goto(voucher_url)
        page.get_by_role("link", name="Technical consulting").click()
        page.get_by_role("button", name=re.compile("^Book")).first.click()
        expect(page.locator(".govuk-notification-banner")).to_be_visible()
        expect(page.locator("#bookings").locator("..")).to_contain_text(said)
        w.check("consulting-booked")
        w.sign_out()

        # The adviser sees the booking, named by the voucher's reference.
        w.sign_in(adviser_email, admin_password)
        expect(page.locator("main")).to_contain_text(re.compile(r"VCH-[0-9A-HJKMNP-TV-Z]{6}"))
        w.check("adviser-booked")
        w.sign_out()
        w.sign_in(assessor_email, admin_password)
        expect(page).to_have_url(re.compile(r"/assess$"))
        w.check("assessor")
        w.sign_out()

        # A forgotten password: the link from the email, used once.
        asked_at = time.time() - 1
        w.go("/sign-in")
        page.get_by_role("link", name="Forgot your password?").click()
        w.check("forgot-password")
        page.get_by_label("Email address").fill(email)
        page.get_by_role("button", name="Send the link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
        w.check("forgot-password-sent")
        _, text = mail_to(mail_dir, email, "Reset your password", after=asked_at)
        # The link names the configured public address; the path is what matters here.
        link = base + re.search(r"/reset-password\?token=[0-9a-f]{64}", text).group(0)
        page.goto(link)
        w.check("reset-password")
        password = "an even longer and more memorable passphrase"
        page.get_by_label("Choose a password").fill(password)
        page.get_by_role("button", name="Save the password").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your password has been changed")
        w.check("password-changed")
        page.goto(link)
        page.get_by_label("Choose a password").fill("yet another long passphrase")
        before = len(errors)
        page.get_by_role("button", name="Save the password").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired or was already used")
        w.check("reset-link-used")
        # That page is answered 400, as it should be; Chromium logs it as a failed load.
        del errors[before:]
        w.sign_in(email, password)
        expect(page).to_have_url(re.compile(r"/portal$"))
        w.sign_out()

        assert not errors, f"console errors: {errors}"

        # Without JavaScript, on a 320-pixel screen: sign in, open the voucher, make a key.
        bare = browser.new_context(java_script_enabled=False, viewport={"width": 320, "height": 640})
        page = bare.new_page()
        w.page = page
        w.sign_in(email, password)
        expect(page).to_have_url(re.compile(r"/portal$"))
        page.locator("a[href^='/portal/vouchers/']").first.click()
        page.get_by_label("Name of a new key").fill("no-script key")
        page.get_by_role("button", name="Create key").click()
        assert page.locator("#new-key").inner_text().strip().startswith("vk_live_")
        # The copy button needs script: without it, it stays hidden rather than broken.
        expect(page.get_by_role("button", name="Copy key")).to_be_hidden()
        page.screenshot(path=str(shots / "no-javascript-320px-key.png"), full_page=True)
        bare.close()
        browser.close()
    print(f"walk passed: {len(w.checked)} pages, 0 accessibility violations: {', '.join(w.checked)}")


if __name__ == "__main__":
    main()
