"""Request dependencies: settings, DB session, Prefect gateway, the authenticated user.

Why here: every route gets its collaborators the same way, and authentication is decided in
one function (bearer token → user; the development switch only admits loopback clients).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar

from facade.config import FacadeSettings, is_loopback
from facade.errors import ApiError
from facade.models import Task, User
from facade.prefect_gateway import PrefectGateway
from facade.tokens import ensure_user, resolve_token

MAX_ID = 2**63 - 1
bearer = HTTPBearer(auto_error=False, description="API token issued by `facade token create`")


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the
# threadpool, one thread hop each (≈16 per request before, most of the app time under load,
# bench figure 4). Their DB work is a couple of indexed SQLite lookups, cheap enough for the
# event loop.
async def get_settings(request: Request) -> FacadeSettings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    # A slot first (facade.db.request_slots): the pool can then never be empty when the
    # session checks a connection out on the event loop.
    async with request.app.state.db_slots:
        with Session(request.app.state.engine) as session:
            yield session


async def get_gateway(request: Request) -> PrefectGateway:
    return request.app.state.gateway


SettingsDep = Annotated[FacadeSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
GatewayDep = Annotated[PrefectGateway, Depends(get_gateway)]


def unauthorized(text: str = "Authentication required") -> ApiError:
    return ApiError(401, text, headers={"WWW-Authenticate": "Bearer"})


def authenticate(
    session: Session, settings: FacadeSettings, token: str | None, client_host: str | None
) -> User:
    """The user behind ``token``; in dev mode an anonymous loopback client is the dev user."""
    if token:
        user = resolve_token(session, token)
        if user is None:
            raise unauthorized("Invalid or revoked token")
        return user
    if settings.dev_mode and is_loopback(client_host):
        user = ensure_user(session, settings.dev_user)
        session.commit()
        return user
    raise unauthorized()


async def current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    token = credentials.credentials if credentials is not None else None
    host = request.client.host if request.client else None
    user = authenticate(session, settings, token, host)
    request.state.user_name = user.name
    return user


UserDep = Annotated[User, Depends(current_user)]


def owned_task(session: Session, user: User, task_id: int) -> Task:
    """The task if ``user`` may see it; another user's task is indistinguishable from none."""
    # Ids beyond SQL's 64-bit integers cannot exist; the driver would raise (500), not miss.
    task = session.get(Task, task_id) if 0 < task_id <= MAX_ID else None
    if task is None or (task.user_name != user.name and not user.is_admin):
        raise ApiError(404, "Task not found")
    return task


def visible_tasks_query(user: User, owner: str | None = None) -> SelectOfScalar[Task]:
    """Tasks ``user`` may list, optionally one owner's (admins may name anyone)."""
    query = select(Task)
    if not user.is_admin:
        query = query.where(Task.user_name == user.name)
    elif owner:
        query = query.where(Task.user_name == owner)
    return query
