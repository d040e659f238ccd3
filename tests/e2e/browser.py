"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven through Selenium.

Why a driver and not ``--dump-dom``: the Prefect UI is a JavaScript app that loads its data
after the page, and lists task runs in pages; a driver can wait for what the page shows and
click its tabs, where a one-shot dump can only hope a time budget was enough.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def available() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (scripts/setup.sh installs chromium and chromium-driver)"
    return None


@contextmanager
def chromium(log_path: Path, extra_args: tuple[str, ...] = ()) -> Iterator[WebDriver]:
    """A headless Chromium with a throw-away profile; quit (and the profile removed) after."""
    profile = Path(tempfile.mkdtemp(prefix="topup-chromium-", dir="/tmp"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1600,2000",
        f"--user-data-dir={profile}",
        *extra_args,
    ):
        options.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_path))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_text(driver: WebDriver) -> str:
    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)
    except WebDriverException:
        return ""


def wait_page(
    driver: WebDriver,
    condition: Callable[[str], bool],
    timeout: float,
    what: str,
    action: Callable[[], object] | None = None,
) -> str:
    """Poll the visible text of the page until ``condition`` holds; its text.

    ``action`` runs before each look (e.g. scrolling a lazily rendered list). On time-out the
    error carries the end of what the page did show.
    """
    deadline = time.monotonic() + timeout
    text = ""
    while True:
        if action is not None:
            try:
                action()
            except WebDriverException:
                pass
        text = page_text(driver)
        if condition(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the page {driver.current_url} did not show {what} within {timeout}s; "
                f"it shows:\n{text[-3000:]}"
            )
        time.sleep(0.25)


def click_when_present(driver: WebDriver, css: str, timeout: float) -> None:
    """Click the element matching ``css`` as soon as the app has rendered it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except WebDriverException:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no clickable {css!r} on {driver.current_url} within {timeout}s; "
                    f"the page shows:\n{page_text(driver)[-2000:]}"
                ) from None
        time.sleep(0.25)


def element_when_present(driver: WebDriver, css: str, timeout: float) -> WebElement:
    """The first element matching ``css`` once the app has rendered it."""
    deadline = time.monotonic() + timeout
    while True:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no {css!r} on {driver.current_url} within {timeout}s; "
                f"the page shows:\n{page_text(driver)[-2000:]}"
            )
        time.sleep(0.25)


# Reads the open document again from the page itself, as the browser fetches it (no token, no
# cookies): its status, type and first bytes.
_FETCH_SELF = """
const done = arguments[arguments.length - 1];
fetch(location.href, {credentials: "omit"})
  .then(r => r.arrayBuffer().then(b => done({
    status: r.status,
    type: r.headers.get("content-type"),
    head: String.fromCharCode(...new Uint8Array(b.slice(0, 5))),
    contentType: document.contentType,
  })))
  .catch(e => done({status: -1, error: String(e), contentType: document.contentType}));
"""


def open_document(driver: WebDriver, timeout: float) -> dict[str, object]:
    """What the browser opened (after ``driver.get``), once loaded: its ``contentType``, and
    the ``status``, ``type`` and first five bytes (``head``) of the same URL fetched by the
    page itself."""
    deadline = time.monotonic() + timeout
    while driver.execute_script("return document.readyState") != "complete":
        if time.monotonic() > deadline:
            raise AssertionError(f"{driver.current_url} did not finish loading in {timeout}s")
        time.sleep(0.25)
    driver.set_script_timeout(timeout)
    return dict(driver.execute_async_script(_FETCH_SELF))


def scroll_to_bottom(driver: WebDriver) -> None:
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")


# Every host name resolves to nothing except loopback: the page can reach this machine only
# (a CDN asset would fail to load, as on a network without internet access).
OFFLINE_ARGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",  # nothing listens there: no direct route out
    "--proxy-bypass-list=127.0.0.1;localhost",
)
