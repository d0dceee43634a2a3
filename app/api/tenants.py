"""Tenants the caller may see, the calling token itself, and (for admins) creating tenants
and giving them their namespaces."""

from __future__ import annotations

from typing import Any

from flask import url_for

from ..services.errors import FieldError, ValidationError
from ..services.tenants import create_tenant, get_tenant, list_tenants, set_tenant_paths
from . import bp
from .auth import current_actor, current_token, require_writer
from .inputs import PageRequest, json_body, page_of_rows
from .representation import tenant_resource, token_resource


@bp.get("/tenants")
def tenants():
    """Admins, editors and viewers see every tenant; a tenant role sees its own."""
    paging = PageRequest.from_args()
    every = list_tenants(current_actor())
    start = (paging.page - 1) * paging.per_page
    return page_of_rows(every[start:start + paging.per_page], len(every), paging,
                        tenant_resource)


@bp.post("/tenants")
def tenant_create():
    """Create a tenant with its namespaces (admins only, as in every channel)."""
    actor = require_writer()
    body = _object(json_body(), allowed=("slug", "name", "paths"))
    slug, name = body.get("slug"), body.get("name", "")
    if not isinstance(slug, str) or not isinstance(name, str):
        raise ValidationError([FieldError("slug" if not isinstance(slug, str) else "name",
                                          "slug and name are text, such as acme and Acme")])
    tenant = create_tenant(slug, name, paths=_paths(body.get("paths", [])), actor=actor)
    return tenant_resource(tenant), 201, {"Location": url_for("api.tenant", slug=tenant.slug)}


@bp.get("/tenants/<slug>")
def tenant(slug: str):
    return tenant_resource(get_tenant(slug, current_actor()))


@bp.patch("/tenants/<slug>")
def tenant_update(slug: str):
    """Replace a tenant's namespaces (admins only)."""
    actor = require_writer()
    body = _object(json_body(), allowed=("paths",))
    if "paths" not in body:
        raise ValidationError([FieldError("paths", 'send {"paths": ["/api/t/acme/*"]}')])
    return tenant_resource(set_tenant_paths(slug, _paths(body["paths"]), actor=actor))


@bp.get("/tokens/self")
def token_self():
    """The calling token: handy for a script to check what it may do before it does it."""
    return token_resource(current_token())


def _object(body: Any, *, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError([FieldError("", "a tenant is a JSON object")])
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError([FieldError(unknown[0], f"unknown field; send {', '.join(allowed)}")])
    return body


def _paths(paths: Any) -> list[str]:
    if not isinstance(paths, list):
        raise ValidationError([FieldError("paths", 'paths is a list of path patterns, such as '
                                                   '["/api/t/acme/*"]')])
    return paths
