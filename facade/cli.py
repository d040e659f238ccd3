"""``python -m facade.cli``: issue and revoke API tokens, and serve the API.

Why a CLI: tokens are the only way in, and they are shown exactly once at creation (only
their hash is stored), so issuing them must be an explicit operator action.
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlmodel import Session, select

from facade.config import FacadeSettings
from facade.db import create_tables, make_engine
from facade.models import ApiToken, User
from facade.tokens import issue_token, revoke_tokens

app = typer.Typer(help="Topup facade administration", no_args_is_help=True)
token_app = typer.Typer(help="API tokens", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _session() -> Session:
    engine = make_engine(FacadeSettings().database_url)
    create_tables(engine)
    return Session(engine)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="User name the token acts as")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role")] = False,
    label: Annotated[str, typer.Option(help="What the token is for")] = "",
) -> None:
    """Create a token for USER (created if new) and print it once."""
    with _session() as session:
        try:
            token = issue_token(session, user, admin=admin, label=label)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    typer.echo(token)


@token_app.command("list")
def token_list() -> None:
    """Tokens (prefix only), their users and whether they are revoked."""
    with _session() as session:
        for row in session.exec(select(ApiToken).order_by(ApiToken.id)).all():
            user = session.get(User, row.user_name)
            role = "admin" if user and user.is_admin else "user"
            state = "revoked" if row.revoked_at else "active"
            typer.echo(f"{row.prefix}…\t{row.user_name}\t{role}\t{state}\t{row.label}")


@token_app.command("revoke")
def token_revoke(
    user: Annotated[str, typer.Option("--user")],
    prefix: Annotated[str | None, typer.Option(help="Only the token starting with this")] = None,
) -> None:
    """Revoke USER's tokens (all, or the one with PREFIX)."""
    with _session() as session:
        count = revoke_tokens(session, user, prefix)
    typer.echo(f"revoked {count} token(s)")


@app.command("serve")
def serve() -> None:
    """Run the API with uvicorn on the configured host and port."""
    import uvicorn

    from facade.main import create_app

    settings = FacadeSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    app()
