"""``/docs`` and ``/redoc`` render in a headless Chromium that cannot reach the internet.

The Swagger UI and ReDoc assets come from the facade itself (package ``fastapi-offline``);
the browser resolves no host name but loopback, so a page that still needed a CDN would stay
blank and the operations would never show.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException

from tests.e2e import browser
from tests.facade.served import Served, local_settings, serve

pytestmark = pytest.mark.skipif(browser.available() is not None, reason=str(browser.available()))


@pytest.fixture(scope="module")
def docs_facade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("docs")
    with serve(local_settings(root / "facade.db", root / "downloads")) as served:
        yield served


def test_docs_and_redoc_render_operations_offline(docs_facade: Served, tmp_path: Path) -> None:
    with docs_facade.client() as c:
        html = c.get("/docs").text
        redoc_html = c.get("/redoc").text
        bundle = c.get("/docs-assets/swagger-ui-bundle.js")
    # the pages name only the facade's own assets
    assert "/docs-assets/swagger-ui-bundle.js" in html and "/docs-assets/redoc" in redoc_html
    for page in (html, redoc_html):
        assert "cdn." not in page and "https://" not in page.split("<body")[0]
    assert bundle.status_code == 200 and len(bundle.content) > 100_000

    with browser.chromium(tmp_path / "chromedriver.log", browser.OFFLINE_ARGS) as driver:
        driver.get(f"{docs_facade.base_url}/docs")
        text = browser.wait_page(
            driver,
            lambda t: "/api/tasks/{task_id}/resume" in t and "/api/workflows" in t,
            timeout=60,
            what="the Swagger UI operations",
        )
        assert "Topup HTTP API" in text and "POST" in text
        # the browser really was offline: an outside URL does not load
        with pytest.raises(WebDriverException, match="net::ERR_"):
            driver.get("https://cdn.jsdelivr.net/")

        driver.get(f"{docs_facade.base_url}/redoc")
        browser.wait_page(
            driver,
            lambda t: "Topup HTTP API" in t and "/api/tasks/{task_id}/resume" in t,
            timeout=60,
            what="the ReDoc operations",
        )
