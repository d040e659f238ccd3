"""What the ``topup`` commands share: the console, the common options, settings and the
stack's API, failing with an exit code, and the facade's token database.

Why a module: every command module (``stack_cmds``, ``runs``, ``rounds``, ``tools``) needs
these, and keeping them here lets each command module depend only downwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from topup_cli.api import CliError, Target, resolve
from topup_cli.operate import Detached
from topup_cli.settings import CliSettings

console = Console(highlight=False, soft_wrap=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Stack data dir (default $TOPUP_STACK_DATA_DIR or var/)"),
]
ApiOpt = Annotated[
    str | None,
    typer.Option("--api-url", help="Prefect API URL (default: the stack of the data dir)"),
]
UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        envvar="TOPUP_USER",
        help="Whom the run is for: the facade shows it as this user's task (default: login)",
    ),
]


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TOPUP_TOKEN",
        help="A facade API token: the run is for its user (instead of --user)",
    ),
]

WatchOpt = Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the run")]
PromptOpt = Annotated[
    bool, typer.Option("--prompt/--no-prompt", help="Answer pauses here (else in the UI)")
]
FollowTimeoutOpt = Annotated[float, typer.Option(help="Stop following after this many seconds")]
TimingsOpt = Annotated[
    bool,
    typer.Option(
        "--timings", hidden=True, help="Also print when the first step was seen (benchmarks)"
    ),
]


def user_tags(
    user: str | None, token: str | None = None, data_dir: Path | None = None
) -> list[str]:
    """The run's owner tag (``facade-user:<name>``): the token's user, else --user /
    $TOPUP_USER, else the login name."""
    import getpass

    from facade.tokens import USER_NAME_RE, resolve_token

    if token:
        with token_session(data_dir) as session:
            owner = resolve_token(session, token)
        if owner is None:
            raise fail("unknown or revoked token", 2)
        if user is not None and user != owner.name:
            raise fail(f"--user {user} does not match the token's user", 2)
        user = owner.name
    name = user if user is not None else getpass.getuser()
    if not USER_NAME_RE.fullmatch(name):
        raise fail("user name must be 1-64 characters of letters, digits, _ . @ -", 2)
    return [f"facade-user:{name}"]


def settings_for(data_dir: Path | None, **overrides: Any) -> CliSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return CliSettings(**values)


def target_for(data_dir: Path | None, api_url: str | None) -> Target:
    """The stack's API; exit 1 saying how to start one when there is none (no port guessed)."""
    try:
        return resolve(settings_for(data_dir), api_url)
    except CliError as exc:
        raise fail(str(exc)) from None


def detached_exit(left: Any) -> typer.Exit:
    """Ctrl-C while following a run: the run goes on (or keeps waiting) without the CLI."""
    run = left.run
    console.print(
        f"left flow run {escape(run.name)} as it is ({run.state_name}); "
        f"`topup attach {escape(run.name)}` comes back to it"
    )
    return typer.Exit(130)


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/] {escape(message)}")  # values may hold [brackets]
    return typer.Exit(code)


@contextlib.contextmanager
def api_errors(target: Target, detachable: bool = False) -> Iterator[None]:
    """Talking to the stack's API: a CLI error or an unreachable API exits 1 with one line;
    with ``detachable``, Ctrl-C while following a run exits 130 and leaves the run as it is."""
    try:
        yield
    except Detached as left:
        if not detachable:
            raise
        raise detached_exit(left) from None
    except CliError as exc:
        raise fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None


def exit_for(final: Any) -> typer.Exit:
    """Exit 0 only if the followed run Completed."""
    return typer.Exit(0 if final.state is not None and final.state.is_completed() else 1)


def token_db(data_dir: Path | None) -> str:
    """The facade's database: the running stack's, else TOPUP_DATABASE_URL, else the data dir's."""
    from topup_cli.state import read_state

    settings = settings_for(data_dir)
    state = read_state(settings.state_file)
    if state is not None and state.topup_database_url:
        return state.topup_database_url
    env = os.environ.get("TOPUP_DATABASE_URL")
    if env:
        return env
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{settings.data_dir.resolve() / 'topup.db'}"


def token_session(data_dir: Path | None) -> Any:
    from sqlmodel import Session

    from facade.db import create_tables, make_engine

    engine = make_engine(token_db(data_dir))
    create_tables(engine)
    return Session(engine)
