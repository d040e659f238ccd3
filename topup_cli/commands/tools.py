"""``topup doctor | transcript | token create | token revoke``: a site's preflight, a run's
remote commands, and the facade's API tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topup_cli.api import find_run
from topup_cli.commands.common import (
    ApiOpt,
    DataDirOpt,
    api_errors,
    console,
    fail,
    settings_for,
    target_for,
    token_db,
    token_session,
)


def doctor(
    site: Annotated[str | None, typer.Option(help="Site name (default: the stack's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
    round: Annotated[str | None, typer.Option("--round", help="Round (default: site's)")] = None,
    sites_dir: Annotated[
        Path | None, typer.Option(help="Site files (default $TOPUP_SITES_DIR or the stack's)")
    ] = None,
    brief: Annotated[bool, typer.Option(help="Evidence only for checks that did not pass")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Read-only preflight of a site over the flows' own connection path.

    Exit 0: usable (warnings allowed); 1: a check failed; 2: bad input.
    """
    from steps.doctor import DoctorOptions, run_doctor
    from steps.remote.validate import InvalidValue, round_
    from steps.session import load_settings
    from topup_cli.doctor import render, resolve_site

    name = resolve_site(settings_for(data_dir), site, sites_dir)
    try:
        settings = load_settings(name)
        options = DoctorOptions(round=round_(round) if round else None)
    except (ValueError, LookupError, InvalidValue) as exc:
        raise fail(str(exc), 2) from None
    report = run_doctor(settings, name, options)
    if as_json:
        typer.echo(report.model_dump_json(indent=1))
    else:
        render(report, console, verbose=not brief)
    raise typer.Exit(0 if report.usable else 1)


def transcript(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The file topup-sim replay reads")
    ] = False,
    full: Annotated[bool, typer.Option(help="Whole command texts")] = False,
    db_url: Annotated[str | None, typer.Option(help="Outputs store (default: the stack's)")] = None,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
) -> None:
    """Every remote command of a flow run: step, text (secrets masked), cwd, exit, duration."""
    from uuid import UUID

    from topup_cli.transcript import export, render

    run_id = flow_run
    try:
        UUID(flow_run)
    except ValueError:  # a name: the Prefect API knows its id
        target = target_for(data_dir, api_url)
        with api_errors(target), target.client() as client:
            run_id = str(find_run(client, flow_run).id)
    t = export(run_id, db_url or token_db(data_dir))
    if not t.commands:
        raise fail(f"no transcript for flow run {run_id}")
    if as_json:
        typer.echo(t.model_dump_json(indent=1))
    else:
        render(t, console, full=full)


def _check_user(user: str) -> None:
    """Refuse a malformed name before touching the database: a typo in `revoke` must not
    read as "revoked 0 token(s)", and a trailing newline must not create a user."""
    from facade.tokens import USER_NAME_RE

    if not USER_NAME_RE.fullmatch(user):
        raise fail("user name must be 1-64 characters of letters, digits, _ . @ -", 2)


def token_create(
    user: Annotated[str, typer.Option("--user", help="User name the token acts as")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role")] = False,
    label: Annotated[str, typer.Option(help="What the token is for")] = "",
    data_dir: DataDirOpt = None,
) -> None:
    """Create a token for USER (created if new) and print it once."""
    from facade.tokens import issue_token

    _check_user(user)
    with token_session(data_dir) as session:
        try:
            token = issue_token(session, user, admin=admin, label=label)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    typer.echo(token)


def token_revoke(
    user: Annotated[str, typer.Option("--user")],
    prefix: Annotated[str | None, typer.Option(help="Only the token starting with this")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke USER's tokens (all, or the one with PREFIX)."""
    from facade.tokens import revoke_tokens

    _check_user(user)
    with token_session(data_dir) as session:
        count = revoke_tokens(session, user, prefix)
    typer.echo(f"revoked {count} token(s)")
