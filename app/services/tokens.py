"""API tokens: shown once, stored as a SHA-256 hash, with a role, an optional tenant scope,
an optional expiry, revocable, and a last-used time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import TENANT_ROLES, TOKEN_ROLES, ApiToken, Tenant
from .access import Actor, require_admin
from .changes import policy_change
from .errors import Conflict, FieldError, NotFound, ValidationError
from .validation import parse_expiry

TOKEN_PREFIX = "cc_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@/-]{0,99}$")
# Updating last_used_at on every call would write once per API request; once a minute is
# enough to show whether a token is in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(name: str, role: str, *, actor: Actor, tenant: str | None = None,
                 expires_at: datetime | str | None = None) -> IssuedToken:
    """Issue a token; *expires_at* is a time or ISO 8601 text (UTC when it names no zone)."""
    require_admin(actor, to="create API tokens")
    errors: list[FieldError] = []
    # Text is parsed, and a time without a zone is taken as UTC, as the docstring says.
    expires_at = parse_expiry(expires_at, lambda _field, message: errors.append(
        FieldError("expires_at", message)))
    name = (name or "").strip()
    if not _NAME.match(name):
        errors.append(FieldError("name", "name the token after its use, such as deploy-bot "
                                         "(letters, digits, spaces, . _ : @ / -)"))
    if role not in TOKEN_ROLES:
        errors.append(FieldError("role", f"role must be one of {', '.join(TOKEN_ROLES)}"))
    tenant_id = None
    if role in TENANT_ROLES:
        if not tenant:
            errors.append(FieldError("tenant", f"a {role} token needs a tenant"))
        else:
            tenant_id = db.session.scalar(sa.select(Tenant.id).where(Tenant.slug == tenant))
            if tenant_id is None:
                errors.append(FieldError("tenant", f"there is no tenant {tenant}"))
    elif tenant:
        errors.append(FieldError("tenant", f"a {role} token is not scoped to a tenant; use "
                                           "tenant-editor or tenant-viewer"))
    if expires_at is not None and expires_at <= datetime.now(UTC):
        errors.append(FieldError("expires_at", "the expiry is in the past"))
    if errors:
        raise ValidationError(errors)
    # API tokens do not move the policy version: the engine does not depend on them.
    with policy_change(actor, bump_version=False) as change:
        if db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
            raise Conflict(f"a token named {name} already exists; revoke it or choose another "
                           "name")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(name=name, token_hash=hash_secret(secret), prefix=secret[:10],
                         role=role, tenant_id=tenant_id, created_by=actor.name,
                         expires_at=expires_at)
        db.session.add(token)
        db.session.flush()
        change.audit("token.create", f"created API token {name} ({role}"
                     + (f", tenant {tenant}" if tenant else "") + ")", tenant_id=tenant_id)
    return IssuedToken(token, secret)


def authenticate_token(secret: str) -> ApiToken | None:
    """The live token for *secret*, or None (unknown, revoked or expired)."""
    if not secret or not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    digest = hash_secret(secret)
    token = db.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = datetime.now(UTC)
    if token.revoked_at is not None or (token.expires_at is not None
                                        and token.expires_at <= now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
        db.session.commit()
    return token


def list_tokens() -> list[ApiToken]:
    return list(db.session.scalars(sa.select(ApiToken).options(selectinload(ApiToken.tenant))
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def revoke_token(name: str, *, actor: Actor) -> ApiToken:
    require_admin(actor, to="revoke API tokens")
    with policy_change(actor, bump_version=False) as change:
        token = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == name))
        if token is None:
            raise NotFound(f"there is no token named {name}")
        if token.revoked_at is None:
            token.revoked_at = datetime.now(UTC)
            change.audit("token.revoke", f"revoked API token {name}", tenant_id=token.tenant_id)
    return token


def token_actor(token: ApiToken) -> Actor:
    return Actor(f"token:{token.name}", "api", token.role, token.tenant_id)


def token_state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


