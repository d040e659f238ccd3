"""``python -m bench.physics_shots [--out docs]``: the docs' pictures of "physics at a glance".

Why from a real run: the pictures must show what an operator sees. Three dates of round18 run
in this process on a fresh simulated site (real sshd pair, a real Prefect server), with a few
extra noisy runs so the plots have windows and cuts to show; then the date summary and the
round's trends are drawn from the outputs store exactly as the flow's artifacts draw them,
and ``docs/physics.md`` holds the last date's summary artifact as Markdown (its table, with
the PNG as a file instead of the artifact's embedded copy).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from bench.site_env import fresh_site, prefect_in_process, ssh_pair

ROUND = "round18"
DATES = ("250624", "250625", "250626")
NOISE = [85391, 85400, 85411, 85413, 85421]  # the layout's two, and some of the later dates
PARAMETERS = {
    "max_wait_minutes": 5.0,
    "poll_seconds": 0.05,
    "approve_reset": True,
    "approved_by": "docs",
}

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

app = typer.Typer(add_completion=False)


def ui_screenshot(url: str, wait_for: str, dest: Path, timeout: float = 120) -> bool:
    """A headless-Chromium screenshot of ``url`` once its page shows ``wait_for``.

    Why a browser: the Prefect UI is a JavaScript app; this is what an operator sees. False
    when Chromium is not installed (``scripts/setup.sh`` installs it) or the text never came.
    """
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return False
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    profile = Path(tempfile.mkdtemp(prefix="topup-shots-chromium-", dir="/tmp"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1500,1900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        deadline = time.monotonic() + timeout
        while wait_for not in (text := driver.find_element(By.TAG_NAME, "body").text):
            if time.monotonic() > deadline:
                typer.echo(f"no {wait_for!r} at {url} after {timeout:g}s; page: {text[:1000]!r}")
                return False
            time.sleep(0.5)
        time.sleep(2)  # the embedded PNG decodes after the text shows
        driver.save_screenshot(str(dest))
        return True
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def latest_artifact_id(round: str, date: str) -> str:
    """The id of the date's newest summary artifact (its page in the UI shows the content)."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.recording import artifact_key

    key = artifact_key(round, date, "physics-summary")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return str(max(found, key=lambda a: a.created).id)  # type: ignore[arg-type, return-value]


def render(out: Path) -> list[Path]:
    """Run the dates, then write the PNGs under ``out/img`` and ``out/physics.md``."""
    from prefect.settings import PREFECT_API_URL

    from flows.physics import summary_markdown, trends_markdown
    from flows.topup_standard import topup_standard
    from store import physics, physics_plots

    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with ssh_pair() as pair, prefect_in_process(ui=True), fresh_site(pair) as site:
        site.sim.set_faults(noise_runs=NOISE)
        for date in DATES:
            state = topup_standard(date=date, round=ROUND, **PARAMETERS, return_state=True)
            if not state.is_completed():
                raise RuntimeError(f"the run of {date} ended {state.name}: {state.message}")
        last = DATES[-1]
        summary = physics.date_summary(ROUND, last)
        trends = physics.round_trends(ROUND, highlight=last)
        shot = img / f"physics-summary-{last}.png"
        trend = img / f"physics-trends-{ROUND}.png"
        shot.write_bytes(physics_plots.summary_png(summary))
        trend.write_bytes(physics_plots.trends_png(trends))
        ui = str(PREFECT_API_URL.value()).removesuffix("/api")
        artifact = img / f"physics-summary-artifact-{last}.png"
        page_url = f"{ui}/artifacts/artifact/{latest_artifact_id(ROUND, last)}"
        if ui_screenshot(page_url, "IST expected", artifact):
            written.append(artifact)
    page = out / "physics.md"
    page.write_text(
        "# Physics at a glance (generated by `python -m bench.physics_shots`)\n\n"
        "What the summary artifact of a date (`<round>-<date>-physics-summary`) and the round's "
        "trend artifact (`<round>-physics-trends`) show in the Prefect UI, from a run of "
        f"{', '.join(DATES)} on the simulated site. The facade serves the same as JSON and PNG: "
        "`GET /api/tasks/{id}/summary[.png]`, `GET /api/rounds/{round}/trends[.png]`.\n\n"
        + "".join(
            f"![the summary artifact of {DATES[-1]} in the Prefect UI](img/{p.name})\n\n"
            for p in written
        )
        + summary_markdown(summary, f"img/{shot.name}").replace("# Physics", "## Physics", 1)
        + "\n"
        + trends_markdown(trends, f"img/{trend.name}").replace("# Trends", "## Trends", 1)
    )
    return [shot, trend, page, *written]


@app.command()
def main(
    out: Annotated[Path, typer.Option(help="docs folder (pictures go to <out>/img)")] = Path(
        "docs"
    ),
) -> None:
    for path in render(out):
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
