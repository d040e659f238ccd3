"""API tokens: issue, hash, resolve.

Why SHA-256 and not a password hash: tokens are 256-bit random strings, so a fast hash is
enough to make a leaked database useless, and lookups stay one indexed query per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlmodel import Session, select

from facade.models import ApiToken, User, utcnow

TOKEN_PREFIX = "tpu_"
USER_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def ensure_user(session: Session, name: str, *, admin: bool | None = None) -> User:
    """The user ``name``, created if missing; ``admin`` (when given) sets the role."""
    if not USER_NAME_RE.fullmatch(name):
        raise ValueError("user name must be 1-64 characters of letters, digits, _ . @ -")
    user = session.get(User, name)
    if user is None:
        user = User(name=name, is_admin=bool(admin))
        session.add(user)
    elif admin is not None:
        user.is_admin = admin
        session.add(user)
    session.flush()
    return user


def issue_token(session: Session, user_name: str, *, admin: bool = False, label: str = "") -> str:
    """Create a token for ``user_name`` (creating the user); returns the token in clear, once."""
    ensure_user(session, user_name, admin=admin or None)
    token = new_token()
    session.add(
        ApiToken(
            token_hash=hash_token(token),
            prefix=token[: len(TOKEN_PREFIX) + 4],
            user_name=user_name,
            label=label,
        )
    )
    session.commit()
    return token


def resolve_token(session: Session, token: str) -> User | None:
    """The user a live token belongs to, or None."""
    if not token or len(token) > 256:
        return None
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return session.get(User, row.user_name)


def revoke_tokens(session: Session, user_name: str, prefix: str | None = None) -> int:
    """Revoke a user's tokens (all, or those starting with ``prefix``); returns how many."""
    rows = session.exec(
        select(ApiToken).where(ApiToken.user_name == user_name, ApiToken.revoked_at.is_(None))
    ).all()
    count = 0
    for row in rows:
        if prefix is None or row.prefix.startswith(prefix) or prefix.startswith(row.prefix):
            row.revoked_at = utcnow()
            session.add(row)
            count += 1
    session.commit()
    return count
