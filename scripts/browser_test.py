"""The two pages in a real browser (issue 20).

The forum: two people register (reading their codes from the server's outbox), one posts
anonymously and waits in her inbox, the other comments; both see the right names, and the reply
reaches her inbox live; a search shows its highlighted hit;
the page never shows an anonymous author's username. The console: an admin logs in, starts a
rebuild and sees its bar reach 100% and the table show the new generation, browses the
pseudonymised event log, and sees a chart drawn from non-empty data. No console error and no
failed request anywhere. Screenshots at phone and desktop widths.

    python browser_test.py BASE_URL DATA_DIR SCREENSHOT_DIR TREEHOLE_BINARY
"""

import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, DATA, SHOTS, BINARY = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
PASSWORD = "correct horse battery"
SIZES = {"phone": (390, 844), "desktop": (1280, 900)}


def browser():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_window_size(*SIZES["desktop"])
    return driver


def code_for(email):
    """The newest code mailed to `email`, from the outbox (no SMTP is configured)."""
    for _ in range(50):
        codes = []
        for path in sorted(glob.glob(os.path.join(DATA, "outbox", "*.eml")), key=os.path.getmtime):
            text = open(path, encoding="utf-8", errors="replace").read()
            if re.search(r"^To: .*" + re.escape(email), text, re.M):
                codes += re.findall(r"^Subject: Your treehole code: (\d+)", text, re.M)
        if codes:
            return codes[-1]
        time.sleep(0.1)
    raise AssertionError(f"no code for {email} in the outbox")


class Page:
    def __init__(self, driver):
        self.d = driver
        self.wait = WebDriverWait(driver, 10)

    def go(self, hash_):
        self.d.get(f"{BASE}/{hash_}")

    def find(self, css):
        return self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def text_appears(self, css, text):
        self.wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def fill(self, css, value):
        box = self.find(css)
        box.clear()
        box.send_keys(value)

    def click(self, css):
        self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, css))).click()

    def register(self, name):
        email = f"{name}@campus.edu"
        self.go("#/register")
        self.fill("#email", email)
        self.click("form button.quiet")
        self.text_appears("#status", "code is on its way")
        self.fill("#code", code_for(email))
        self.fill("#username", name)
        self.fill("#new-password", PASSWORD)
        self.click("form button[type=submit]")
        self.wait.until(lambda d: d.execute_script("return !!localStorage.getItem('treehole.token')"))
        self.find("a[href='#/new']:not([hidden])")

    def text(self, css):
        """The element's text read in one step (the projections table is redrawn every second,
        so an element found a moment ago may be gone)."""
        return self.d.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null", css)

    def go_console(self, hash_):
        self.d.get(f"{BASE}/console{hash_}")

    def log_out(self):
        self.go("#/me")
        self.click("main button")
        self.wait.until(lambda d: not d.execute_script("return localStorage.getItem('treehole.token')"))

    def shoot(self, name):
        for size, (w, h) in SIZES.items():
            self.d.set_window_size(w, h)
            time.sleep(0.3)
            self.d.save_screenshot(os.path.join(SHOTS, f"{name}-{size}.png"))
        self.d.set_window_size(*SIZES["desktop"])

    def problems(self):
        """Console errors and failed requests so far."""
        found = [
            f"console: {e['message']}"
            for e in self.d.get_log("browser")
            if e["level"] in ("SEVERE", "ERROR")
        ]
        for entry in self.d.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            # A request the page cancelled (the notification stream, on leaving) did not fail.
            if message["method"] == "Network.loadingFailed" and not message["params"].get("canceled"):
                found.append(f"request failed: {message['params'].get('errorText')}")
            if message["method"] == "Network.responseReceived":
                response = message["params"]["response"]
                if response["status"] >= 400:
                    found.append(f"{response['status']} {response['url']}")
        return found


def console(page):
    d = page.d
    page.register("root_admin")
    page.log_out()
    subprocess.run([BINARY, "admin", "grant", "root_admin", "--data", DATA], check=True,
                   capture_output=True)
    d.get(f"{BASE}/console")
    page.fill("#login", "root_admin")
    page.fill("#password", PASSWORD)
    page.click("form button[type=submit]")
    row = "#projections tr[data-projection=feed]"
    generation = row + " td[data-field=generation]"
    page.wait.until(lambda _: page.text(generation) is not None)
    before = int(page.text(generation))
    page.wait.until(lambda _: d.execute_script(
        "const b = document.querySelector(arguments[0]); if (b) b.click(); return !!b",
        row + " button"))
    # The bar fills, the new generation is swapped in, and the table says so.
    page.wait.until(lambda _: "100%" in (page.text(row + " td[data-field=rebuild]") or ""))
    assert int(page.text(generation)) == before + 1
    assert d.execute_script(
        "return document.querySelector(arguments[0]).value", row + " progress") == 100
    page.shoot("console")

    page.go_console("#/events?type=PostPublished")
    page.find("main section[aria-label=Events] article")
    html = d.page_source
    for secret in ("ann_anon", "bo_named", "ann_anon@campus.edu"):
        assert secret not in html, f"{secret} shows in the event log"
    page.shoot("console-events")

    # A model registered in the console, and a task for it, for the bar chart.
    page.go_console("#/models")
    page.fill("#m-name", "echo")
    page.fill("#m-kind", "text-to-text")
    page.click("form[aria-label='Register a model'] button[type=submit]")
    page.wait.until(lambda _: "echo" in (page.text("main table") or ""))
    token = d.execute_script("return localStorage.getItem('treehole.token')")
    request = urllib.request.Request(
        f"{BASE}/api/v1/tasks", method="POST",
        data=json.dumps({"model": "echo", "input": {"text": "hi"}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    published = json.loads(urllib.request.urlopen(request).read())
    # The console's reads wait for the console's own writes; this one it did not make.
    d.execute_script("lastPosition = arguments[0]", published["position"])
    page.shoot("console-models")

    page.go_console("#/stats")
    page.wait.until(lambda _: d.execute_script("return window.chartData && window.chartData.daily"))
    daily = d.execute_script("return window.chartData.daily")
    assert any(sum(v or 0 for v in s["values"]) > 0 for s in daily), daily
    page.find("#chart-daily canvas")
    page.wait.until(lambda _: d.execute_script("return !!(window.chartData && window.chartData.tasks)"))
    tasks = d.execute_script("return window.chartData.tasks")
    assert sum(tasks["counts"]) > 0, tasks
    page.find("#chart-tasks canvas")
    page.shoot("console-charts")


def main():
    driver = browser()
    page = Page(driver)
    # Ann's own browser, which stays on her inbox while Bo comments.
    ann_driver = browser()
    ann = Page(ann_driver)
    problems = []
    try:
        page.go("#/")
        page.find("main h1")
        # An error from the API shows its problem detail.
        page.go("#/login")
        page.fill("#login", "nobody")
        page.fill("#password", "wrong password")
        page.click("form button[type=submit]")
        page.text_appears("#status", "wrong login or password")
        assert "error" in page.find("#status").get_attribute("class")
        page.d.get_log("performance")  # that refusal (401) was meant
        page.d.get_log("browser")
        # Ann posts anonymously, then waits in her inbox.
        ann.register("ann_anon")
        ann.go("#/new")
        ann.fill("#title", "食堂三楼今天关门了吗？")
        ann.fill("#body", "The third-floor canteen was locked this afternoon. 有人知道吗？")
        ann.click("form button[type=submit]")
        ann.text_appears("#status", "Posted as 洞主")
        post_url = ann_driver.current_url
        ann.find("main article .meta")
        ann.go("#/inbox")
        ann.find("#notifications .empty")

        # Bo comments anonymously and sees the host and his own pseudonym.
        page.register("bo_named")
        driver.get(post_url)
        page.find("#comment-body")
        page.fill("#comment-body", "听说在装修，下周一开。")
        page.click("form[aria-label='Write a comment'] button[type=submit]")
        page.text_appears("#status", "Commented as")
        page.text_appears("main section[aria-label=Comments]", "听说在装修")
        assert not driver.find_elements(By.CSS_SELECTOR, "article[data-post] button.danger"), \
            "another user's post offers to be deleted"
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "main article .meta span:first-child")]
        assert names[0] == "洞主", names
        assert names[1] not in ("", "洞主", "bo_named"), names
        html = driver.page_source
        assert "ann_anon" not in html, "the anonymous author's username is in the page"
        page.shoot("post")

        # Ann's inbox shows the reply as it happens, without a reload.
        ann.text_appears("#notifications", "听说在装修")
        ann.text_appears("a[href='#/inbox']", "Inbox (1)")
        assert "bo_named" not in ann_driver.page_source
        ann.shoot("inbox")
        problems += ann.problems()

        # Search shows the hit highlighted.
        page.go("#/search?q=canteen")
        page.find("main section[aria-label=Results] mark")
        assert "canteen" in page.find("main section[aria-label=Results] mark").text.lower()
        page.shoot("search")

        page.go("#/")
        page.find("main article")
        assert "ann_anon" not in driver.page_source
        page.text_appears("main article", "1 comment")
        assert "1 comments" not in page.find("main").text, "a count of one is plural"
        page.shoot("feed")
        problems += page.problems()
        page.log_out()

        console(page)
        problems += page.problems()
    finally:
        driver.quit()
        ann_driver.quit()
    assert not problems, "\n".join(problems)
    print("browser-test: passed (screenshots in target/screenshots/)")


if __name__ == "__main__":
    main()
