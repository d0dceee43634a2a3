"""Database models: rules, their allowed origins, the policy version, users, the audit trail."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from cors_control.database.tables import UTCDateTime, refusal_group_key
from cors_control.origins import OriginKind
from cors_control.vocabulary import (
    ENFORCE,
    MODES,
    NO_TENANT_SOURCE,
    REFUSE_UNKNOWN_TENANT,
    TENANT_SOURCES,
    UNKNOWN_TENANT_OPTIONS,
)

from .extensions import db, login_manager

ORIGIN_KINDS = tuple(kind.value for kind in OriginKind)
ROLES = ("admin", "editor", "viewer", "tenant-editor", "tenant-viewer")
TENANT_ROLES = ("tenant-editor", "tenant-viewer")
# A role of API tokens only, for the hosts that serve the policy (control-plane mode of the
# engine): they fetch the compiled policy and send back refusals, and call nothing else.
DATA_PLANE_ROLE = "data-plane"
TOKEN_ROLES = (*ROLES, DATA_PLANE_ROLE)
CHANGE_KINDS = ("none", "rule", "allowlist", "list", "tenants", "full")


def _one_of(column: str, values: Iterable[str]) -> str:
    """The SQL of a CHECK that *column* holds one of *values*: ``mode IN ('enforce', 'off')``."""
    return f"{column} IN ({', '.join(_sql_text(value) for value in values)})"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _role_constraints(roles: tuple[str, ...] = ROLES) -> tuple[CheckConstraint, CheckConstraint]:
    """Users and API tokens hold a role, and a tenant exactly when the role is a tenant's."""
    return (
        CheckConstraint(_one_of("role", roles), name="role"),
        CheckConstraint(f"({_one_of('role', TENANT_ROLES)}) = (tenant_id IS NOT NULL)",
                        name="tenant_role"),
    )


# SQLite reuses the largest id after it is deleted; AUTOINCREMENT never does, so an audit
# entry or log row that names a deleted rule never names a new one (migration 0007).
# PostgreSQL's sequences never reuse a value.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


class Rule(db.Model):
    """A path pattern and its CORS options, in flask-cors's vocabulary."""

    __tablename__ = "rules"
    __table_args__ = (
        CheckConstraint(_one_of("mode", MODES), name="mode"),
        CheckConstraint("max_age IS NULL OR max_age >= 0", name="max_age"),
        CheckConstraint(_one_of("tenant_source", TENANT_SOURCES), name="tenant_source"),
        CheckConstraint(_one_of("unknown_tenant", UNKNOWN_TENANT_OPTIONS),
                        name="unknown_tenant"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)
    methods: Mapped[list[str]] = mapped_column(JSON)
    allow_headers: Mapped[list[str]] = mapped_column(JSON)
    expose_headers: Mapped[list[str]] = mapped_column(JSON)
    supports_credentials: Mapped[bool] = mapped_column(Boolean, default=False)
    max_age: Mapped[int | None] = mapped_column(Integer)
    allow_private_network: Mapped[bool] = mapped_column(Boolean, default=False)
    mode: Mapped[str] = mapped_column(String(20), default=ENFORCE)
    description: Mapped[str] = mapped_column(Text, default="")
    # The tenant that owns the rule; None for rules of the platform (admins manage them).
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    # A tenant-selecting rule picks the allowlist of the request's tenant.
    tenant_source: Mapped[str] = mapped_column(String(20), default=NO_TENANT_SOURCE,
                                               server_default=NO_TENANT_SOURCE)
    tenant_key: Mapped[str] = mapped_column(String(200), default="", server_default="")
    unknown_tenant: Mapped[str] = mapped_column(String(20), default=REFUSE_UNKNOWN_TENANT,
                                                server_default=REFUSE_UNKNOWN_TENANT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow,
                                                 onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    # How many origins the rule has (every tenant's lists): kept exact in each write's
    # transaction by app.services.origin_count, which also reads it (this attribute is not
    # refreshed when origins are written).
    origin_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    tenant: Mapped[Tenant | None] = relationship()
    origins: Mapped[list[AllowedOrigin]] = relationship(
        back_populates="rule",
        cascade="all, delete-orphan",
        order_by="AllowedOrigin.value",
        passive_deletes=True,
    )
    # A draft of its options and allowlist, evaluated beside it (see RuleDraft).
    # Not passive: SQLite enforces no foreign keys here, so the ORM deletes the draft itself.
    draft: Mapped[RuleDraft | None] = relationship(
        back_populates="rule", cascade="all, delete-orphan")
    # The shared origin lists the rule uses (deleted with the rule, never the lists).
    list_uses: Mapped[list[RuleOriginList]] = relationship(
        back_populates="rule", cascade="all, delete-orphan")

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<Rule {self.id} {self.path!r}>"


class RuleDraft(db.Model):
    """A tighter version of an enforced rule's options and allowlist, tried on live traffic.

    The live rule keeps deciding; the engine evaluates the draft on the same requests and
    the request log records (mode ``draft``) each one the draft would refuse and the live
    rule allows. ``body`` is in the policy file's vocabulary: the option fields of a rule and
    its ``origins`` (see :mod:`app.services.drafts`). Publishing copies it onto the rule.
    """

    __tablename__ = "rule_drafts"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), unique=True)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow,
                                                 onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    rule: Mapped[Rule] = relationship(back_populates="draft")

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<RuleDraft of rule {self.rule_id}>"


class AllowedOrigin(db.Model):
    """One entry of a rule's allowlist."""

    __tablename__ = "allowed_origins"
    __table_args__ = (
        # One entry per value in the shared list and in each tenant's list of a rule.
        Index("uq_allowed_origins_shared", "rule_id", "value", unique=True,
              sqlite_where=sa.text("tenant_id IS NULL"),
              postgresql_where=sa.text("tenant_id IS NULL")),
        Index("uq_allowed_origins_tenant", "rule_id", "tenant_id", "value", unique=True,
              sqlite_where=sa.text("tenant_id IS NOT NULL"),
              postgresql_where=sa.text("tenant_id IS NOT NULL")),
        # Most origins have no expiry and no tenant: these indexes hold only those that do
        # (every query on them names a value, which implies it), so writing 100,000 plain
        # origins updates two indexes fewer (migration 0020).
        Index("ix_allowed_origins_expires_at", "expires_at",
              sqlite_where=sa.text("expires_at IS NOT NULL"),
              postgresql_where=sa.text("expires_at IS NOT NULL")),
        Index("ix_allowed_origins_tenant_id", "tenant_id",
              sqlite_where=sa.text("tenant_id IS NOT NULL"),
              postgresql_where=sa.text("tenant_id IS NOT NULL")),
        CheckConstraint(_one_of("kind", ORIGIN_KINDS), name="kind"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), index=True
    )
    value: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # On a tenant-selecting rule: whose allowlist this entry is on (None: every tenant's).
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))

    rule: Mapped[Rule] = relationship(back_populates="origins")
    tenant: Mapped[Tenant | None] = relationship()

    def __repr__(self) -> str:
        return f"<AllowedOrigin {self.value!r} on rule {self.rule_id}>"


class OriginList(db.Model):
    """A named, shared list of origins ("frontends") that rules use alongside their own.

    It belongs to the platform (``tenant_id`` None) or to one tenant; its name is unique per
    owner. The engine merges its entries into every rule that uses it.
    """

    __tablename__ = "origin_lists"
    __table_args__ = (
        Index("uq_origin_lists_platform", "name", unique=True,
              sqlite_where=sa.text("tenant_id IS NULL"),
              postgresql_where=sa.text("tenant_id IS NULL")),
        Index("uq_origin_lists_tenant", "tenant_id", "name", unique=True,
              sqlite_where=sa.text("tenant_id IS NOT NULL"),
              postgresql_where=sa.text("tenant_id IS NOT NULL")),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow,
                                                 onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")

    tenant: Mapped[Tenant | None] = relationship()
    entries: Mapped[list[OriginListEntry]] = relationship(
        back_populates="origin_list", cascade="all, delete-orphan",
        order_by="OriginListEntry.value")
    uses: Mapped[list[RuleOriginList]] = relationship(
        back_populates="origin_list", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<OriginList {self.name!r}>"


class OriginListEntry(db.Model):
    """One origin of a shared list: the same kinds, notes and expiry as a rule's origins."""

    __tablename__ = "origin_list_entries"
    __table_args__ = (
        UniqueConstraint("list_id", "value", name="uq_origin_list_entries_value"),
        CheckConstraint(_one_of("kind", ORIGIN_KINDS), name="kind"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(
        ForeignKey("origin_lists.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    origin_list: Mapped[OriginList] = relationship(back_populates="entries")


class RuleOriginList(db.Model):
    """A rule's use of a shared list. A list in use cannot be deleted (RESTRICT)."""

    __tablename__ = "rule_origin_lists"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True)
    list_id: Mapped[int] = mapped_column(
        ForeignKey("origin_lists.id", ondelete="RESTRICT"), primary_key=True, index=True)

    rule: Mapped[Rule] = relationship(back_populates="list_uses")
    origin_list: Mapped[OriginList] = relationship(back_populates="uses")


class Tenant(db.Model):
    """A customer of a multi-tenant API, with its own allowlists and its own users."""

    __tablename__ = "tenants"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The name requests use (URL variable, subdomain label or header value).
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Its namespaces: the path patterns its rules may govern (no two tenants' overlap). A
    # tenant without any owns no rules; the platform's routes are those outside every one.
    paths: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Tenant {self.slug!r}>"


class ApiToken(db.Model):
    """A bearer token for the JSON admin API; only its hash is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        *_role_constraints(TOKEN_ROLES),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant | None] = relationship()


class PolicyState(db.Model):
    """A single row whose version moves with every committed policy change."""

    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PolicyChange(db.Model):
    """What one policy version changed, for processes that hold an earlier one: they load
    only that (see cors_control.database.changes_feed). Written in the transaction of the change
    (app.services.changes); pruned after a day, after which a process that far behind loads
    the policy in full.

    ``kind`` is ``none`` (the version moved; nothing the engine holds did), ``rule`` (compile
    *rule_id* again), ``allowlist`` (*tenant_id*'s origins on *rule_id*, None: the rule's own
    shared ones; *origin* names the value when one changed), ``list`` (every rule using
    *list_id*), ``tenants`` (the tenant names) or ``full``.
    """

    __tablename__ = "policy_changes"
    __table_args__ = (
        CheckConstraint(_one_of("kind", CHANGE_KINDS), name="kind"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(20))
    # No foreign keys: the row outlives what it names (a deleted rule is a change too).
    rule_id: Mapped[int | None] = mapped_column(Integer)
    tenant_id: Mapped[int | None] = mapped_column(Integer)
    list_id: Mapped[int | None] = mapped_column(Integer)
    origin: Mapped[str | None] = mapped_column(String(300))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        *_role_constraints(),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default="viewer")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set exactly for the tenant roles: the one tenant this user may see and change.
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # What the session cookie names the user by (Flask-Login's alternative id): a new token
    # ends every session signed in with the old one.
    session_token: Mapped[str] = mapped_column(String(64), unique=True,
                                               default=new_session_token)

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot sign in
        return self.active

    def get_id(self) -> str:
        return self.session_token

    def end_sessions(self) -> None:
        """Sign the user out everywhere: cookies naming the old token no longer load them."""
        self.session_token = new_session_token()

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class AuditEntry(db.Model):
    """Who changed what, through which channel, with the state before and after; or, for a
    change of a rule's origins, only what changed (``delta``, see :mod:`app.services.audit`),
    which costs the size of the change rather than of the rule."""

    __tablename__ = "audit_entries"
    __table_args__ = NEVER_REUSED_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[int | None] = mapped_column(Integer, index=True)
    rule_path: Mapped[str] = mapped_column(String(500), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    delta: Mapped[dict | None] = mapped_column(JSON)
    policy_version: Mapped[int] = mapped_column(BigInteger)
    # The tenant the change belongs to, so tenant users see their own entries only.
    tenant_id: Mapped[int | None] = mapped_column(Integer, index=True)


@login_manager.user_loader
def load_user(session_token: str) -> User | None:
    user = db.session.scalar(sa.select(User).where(User.session_token == session_token))
    return user if user is not None and user.active else None


def _group_key_of_row(context: Any) -> int | None:
    row = context.get_current_parameters()
    return refusal_group_key(row["origin"], row["rule_path"], row["reason"], row["mode"])


class RequestLogEntry(db.Model):
    """Refused CORS requests, aggregated: one row per (bucket, rule, origin, reason, mode)."""

    __tablename__ = "request_log"
    __table_args__ = (
        UniqueConstraint("bucket_start", "rule_path", "tenant", "origin", "reason", "detail",
                         "mode", name="uq_request_log_key"),
        Index("ix_request_log_last_seen", "last_seen"),
        Index("ix_request_log_rule_bucket", "rule_id", "bucket_start"),
        # Every row of a period from the index alone: the grouped log (its groups, their
        # routes, reasons and trends).
        Index("ix_request_log_window", "last_seen", "origin", "rule_path", "reason", "mode",
              "bucket_start", "count", "first_seen", "id"),
        # The overview's most refused origins: a period's sums per group_key from a narrow
        # index, then the rows of the few groups found (and of the rows without a key).
        Index("ix_request_log_sums", "last_seen", "group_key", "count"),
        Index("ix_request_log_group", "group_key", "last_seen"),
        # The overview's refusals by hour, mode and reason, from the index alone.
        Index("ix_request_log_overview", "bucket_start", "mode", "reason", "last_seen",
              "count"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(UTCDateTime)
    rule_id: Mapped[int | None] = mapped_column(Integer)
    # The rule's path when recorded ("" when no rule matched): the row outlives renames.
    rule_path: Mapped[str] = mapped_column(String(500))
    # The tenant the request named on a tenant-selecting rule ("" otherwise), as sent.
    tenant: Mapped[str] = mapped_column(String(100), default="", server_default="",
                                        index=True)
    origin: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    count: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    # A sample of the first occurrence in the bucket.
    path: Mapped[str] = mapped_column(String(500))
    method: Mapped[str] = mapped_column(String(20))
    preflight: Mapped[bool] = mapped_column(Boolean)
    request_method: Mapped[str] = mapped_column(String(40))
    request_headers: Mapped[str] = mapped_column(String(500))
    user_agent: Mapped[str] = mapped_column(String(300))
    referer: Mapped[str] = mapped_column(String(500))
    # refusal_group_key(origin, rule_path, reason, mode), set by whoever writes the row: NULL
    # on rows never listed among the most refused origins (overflow, no origin, draft) and on
    # rows an engine older than migration 0021 wrote (readers then sum on the strings).
    group_key: Mapped[int | None] = mapped_column(BigInteger, default=_group_key_of_row)


class SignInThrottle(db.Model):
    """Sign-in attempts per account and per client address, shared by every worker and host.

    Each attempt is counted by one upsert before its password is checked
    (:mod:`app.services.auth`).
    """

    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    # Attempts since the window started, counting the one in progress.
    attempts: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # An account's last password check: delayed attempts are measured from it.
    last_check: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EngineProcess(db.Model):
    """A running process that reported which policy version it serves, and when it checked."""

    __tablename__ = "engine_processes"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[int | None] = mapped_column(BigInteger)
    last_check: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")


WEBHOOK_FORMATS = ("json", "slack")
DELIVERY_STATES = ("pending", "delivered", "failed")
DELIVERY_KINDS = ("alert", "test")


class Webhook(db.Model):
    """Where alerts about new refusals go, which refusals they cover, and when they fire."""

    __tablename__ = "webhooks"
    __table_args__ = (
        CheckConstraint(_one_of("format", WEBHOOK_FORMATS), name="format"),
        CheckConstraint("threshold_count >= 1", name="threshold_count"),
        CheckConstraint("window_minutes >= 1", name="window_minutes"),
        CheckConstraint("quiet_days >= 0", name="quiet_days"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    # Kept as written: the HMAC signature needs it (README, "Alerts"); never shown again.
    secret: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Rule paths and reason codes covered; an empty list covers all of them.
    rules: Mapped[list[str]] = mapped_column(JSON, default=list)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    threshold_count: Mapped[int] = mapped_column(Integer, default=5)
    window_minutes: Mapped[int] = mapped_column(Integer, default=10)
    quiet_days: Mapped[int] = mapped_column(Integer, default=7)
    format: Mapped[str] = mapped_column(String(10), default="json")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertState(db.Model):
    """One alert per (webhook, origin, rule): fired once, then silent until it clears."""

    __tablename__ = "alert_states"
    __table_args__ = (
        UniqueConstraint("webhook_id", "origin", "rule_path", name="uq_alert_states_key"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(300))
    rule_path: Mapped[str] = mapped_column(String(500))
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when no refusal of the origin on the rule fell within the window any more.
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class AlertDelivery(db.Model):
    """One message to a webhook, its body exactly as sent, and how sending it went."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        CheckConstraint(_one_of("state", DELIVERY_STATES), name="state"),
        CheckConstraint(_one_of("kind", DELIVERY_KINDS), name="kind"),
        Index("ix_alert_deliveries_due", "state", "next_attempt_at"),
        Index("ix_alert_deliveries_webhook", "webhook_id", "created_at"),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10), default="alert")
    origin: Mapped[str] = mapped_column(String(300), default="")
    rule_path: Mapped[str] = mapped_column(String(500), default="")
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A runner that claims the delivery owns it until then (several processes, one sender).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim: Mapped[str] = mapped_column(String(32), default="")
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
