"""Values that reach a remote shell: rejected by validate, or quoted so they cannot run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim import users
from steps.remote import validate
from steps.remote.site import RemoteSite
from tests.remote.conftest import SIM_USER

ATTACKS = [
    "250624; touch /tmp/pwned",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "250624\ntouch /tmp/pwned",
    "../250624",
    "250624 && id",
    "250624|id",
    "",
]


@pytest.mark.parametrize("value", ATTACKS)
@pytest.mark.parametrize(
    "check", [validate.date, validate.run, validate.round_, validate.job_key, validate.file_name]
)
def test_validators_reject(check: object, value: str) -> None:
    with pytest.raises(validate.InvalidValue):
        check(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    "value", ["relative/x", "/a/../b", "/a\nb", "/a\x00b", "", "..", "~user/x"]
)
def test_path_validator_rejects(value: str) -> None:
    with pytest.raises(validate.InvalidValue):
        validate.path(value)


@pytest.fixture
def marker() -> Iterator[Path]:
    path = Path("/tmp") / f"pwned-{uuid.uuid4().hex[:10]}"
    yield path
    path.unlink(missing_ok=True)


def _evil_dir(site: RemoteSite, marker: Path) -> Path:
    """A real directory whose name is a shell attack (paths only reject NUL, newline, ..)."""
    base = Path(site.settings.control_dir).parent / "work"
    d = base / f"x $(touch {marker}) `touch {marker}` '; touch {marker}; ' \" y"
    d.mkdir(parents=True)
    (d / "f.txt").write_text("data\n")
    users.chown_tree(base, SIM_USER)
    return d


def test_quoted_paths_cannot_execute(site: RemoteSite, marker: Path) -> None:
    d = _evil_dir(site, marker)
    # cwd of a detached command
    site.start_detached("evil.cwd", "pwd", str(d))
    assert site.wait_detached("evil.cwd", 10, 0.05).stdout == f"{d}\n"
    # directory of a poll
    report = site.poll_files(str(d), {1: ["f.txt"]})
    assert report.complete == [1]
    # file facts and download
    facts = site.file_facts([str(d / "f.txt")])
    assert facts[str(d / "f.txt")] is not None
    assert not marker.exists()


def test_quoted_settings_cannot_execute(site: RemoteSite, marker: Path) -> None:
    d = _evil_dir(site, marker)
    env = d / "env.sh"
    env.write_text("export TOPUP_TEST_ENV=evil-env\n")
    evil = RemoteSite(
        site.settings.model_copy(update={"control_dir": str(d / "ctl"), "env_script": str(env)}),
        transport=site.transport,
    )
    assert evil.run(evil.env_prefix() + "echo $TOPUP_TEST_ENV").stdout == "evil-env\n"
    evil.start_detached("evil.ctl", "echo $TOPUP_TEST_ENV", "/tmp")
    assert evil.wait_detached("evil.ctl", 10, 0.05).stdout == "evil-env\n"
    assert [x.key for x in evil.list_detached("evil.")] == ["evil.ctl"]
    evil.forget_detached("evil.ctl")
    assert not marker.exists()


def test_attacks_never_reach_the_shell(site: RemoteSite, marker: Path) -> None:
    before = site.transport.stats.commands
    attack = f"250624; touch {marker}"
    for call in (
        lambda: site.start_detached(attack, "true", "/tmp"),
        lambda: site.detached(f"$(touch {marker})"),
        lambda: site.kill_detached(f"`touch {marker}`"),
        lambda: site.forget_detached(f"x\ntouch {marker}"),
        lambda: site.list_detached(f"a;touch {marker}"),
        lambda: site.poll_files("/tmp", {attack: ["x"]}),
        lambda: site.poll_files("/tmp", {1: [f"$(touch {marker})"]}),
        lambda: site.poll_files("/tmp", {1: ["x"]}, anomalies=[f"`touch {marker}`"]),
        lambda: site.poll_files("/tmp/../tmp", {1: ["x"]}),
        lambda: site.file_facts([f"rel; touch {marker}"]),
        lambda: site.download(f"/tmp/x\ntouch {marker}", Path("/tmp/never")),
        lambda: site.paths(f"round18; touch {marker}"),
    ):
        with pytest.raises(validate.InvalidValue):
            call()
    assert site.transport.stats.commands == before
    assert not marker.exists()
