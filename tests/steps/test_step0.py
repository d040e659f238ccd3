"""Step 0 against the simulated site over the real sshd: one command, right dates."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError
from steps.step0_dates import available_dates
from tests.steps import ROUND, commands, open_remote


@pytest.fixture
def site(ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(ssh_settings, tmp_path / "downloads")


def _six_digit(path: str) -> set[str]:
    return {n for n in os.listdir(path) if re.fullmatch(r"\d{6}", n)}


def test_lists_all_processed_and_unprocessed_dates_in_one_command(site: RemoteSite) -> None:
    paths = site.paths(ROUND)
    expected_all = sorted(_six_digit(paths.data))
    expected_processed = sorted(_six_digit(paths.inj))
    before = commands(site)
    result = available_dates(site, ROUND)
    assert commands(site) - before == 1
    assert result.outcome == Outcome.SUCCESS and result.error is None
    d = result.data
    assert d["all_dates"] == expected_all
    assert {"250624", "250625", "250626", "250627", "250101"} <= set(d["all_dates"])
    assert d["processed_dates"] == expected_processed
    assert "250101" in d["processed_dates"]
    assert d["unprocessed_dates"] == [x for x in expected_all if x not in expected_processed]
    assert "250624" in d["unprocessed_dates"] and "250101" not in d["unprocessed_dates"]
    assert d["counts"] == {
        "total": len(expected_all),
        "processed": len(expected_processed),
        "unprocessed": len(d["unprocessed_dates"]),
    }
    # the date directory without raw files is flagged (steps refuse it)
    assert d["dates_without_data"] == sorted(
        x
        for x in expected_all
        if not any(n.endswith(".raw") for n in os.listdir(f"{paths.data}/{x}"))
    )
    assert "250627" in d["dates_without_data"] and "250626" not in d["dates_without_data"]
    # names that are not dates (calibConst, interval.txt, scripts) never show up
    assert all(re.fullmatch(r"\d{6}", x) for x in d["all_dates"] + d["processed_dates"])


def test_processed_follows_inj_and_desc_order(site: RemoteSite) -> None:
    inj = Path(site.paths(ROUND).inj)
    (inj / "250625").mkdir()
    result = available_dates(site, ROUND, sort_order="desc")
    d = result.data
    assert d["all_dates"] == sorted(d["all_dates"], reverse=True)
    assert "250625" in d["processed_dates"] and "250625" not in d["unprocessed_dates"]
    assert d["unprocessed_dates"] == sorted(d["unprocessed_dates"], reverse=True)


def test_without_processed_only_all_dates(site: RemoteSite) -> None:
    result = available_dates(site, ROUND, include_processed=False)
    assert "processed_dates" not in result.data
    assert result.data["total_count"] == len(result.data["all_dates"]) > 0


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"round": "round18; touch /tmp/pwned-step0"}, 20),
        ({"round": "$(touch /tmp/pwned-step0)"}, 20),
        ({"round": ROUND, "sort_order": "sideways"}, 20),
    ],
)
def test_invalid_inputs_fail_before_any_command(
    site: RemoteSite, kwargs: dict[str, Any], code: int
) -> None:
    before = commands(site)
    with pytest.raises(StepError) as exc:
        available_dates(site, **kwargs)
    assert exc.value.result.error.code == code
    assert exc.value.action == "manual"
    assert commands(site) == before
    assert not Path("/tmp/pwned-step0").exists()


def test_unlistable_inj_gives_dates_with_a_warning(site: RemoteSite, sim: Any) -> None:
    data = Path(site.paths("round99").data)
    (data / "250301").mkdir(parents=True)
    result = available_dates(site, "round99")
    assert result.outcome == Outcome.WARNING
    assert result.error is not None and result.error.code == 1102
    assert result.data["all_dates"] == ["250301"]
    assert "processed_dates" not in result.data


def test_missing_data_fails_with_1103_retry(site: RemoteSite) -> None:
    with pytest.raises(StepError) as exc:
        available_dates(site, "round98")
    assert exc.value.result.error.code == 1103
    assert exc.value.action == "retry"
