"""Tenants the caller may see, and the calling token itself."""

from __future__ import annotations

from ..services.tenants import list_tenants
from . import bp
from .auth import current_actor, current_token
from .inputs import PageRequest, page_of_rows
from .representation import tenant_resource, token_resource


@bp.get("/tenants")
def tenants():
    """Admins, editors and viewers see every tenant; a tenant role sees its own."""
    paging = PageRequest.from_args()
    every = list_tenants(current_actor())
    start = (paging.page - 1) * paging.per_page
    return page_of_rows(every[start:start + paging.per_page], len(every), paging,
                        tenant_resource)


@bp.get("/tokens/self")
def token_self():
    """The calling token: handy for a script to check what it may do before it does it."""
    return token_resource(current_token())
