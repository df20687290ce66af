"""The development host's security policy: HTTP basic auth with the host's one account.

``request.identity`` is the account's name when the request carries its
credentials (``dev.username``/``dev.password``), else None. The write
endpoints need an identity; the admin pages (``/admin/...``, the extension's
``/admin/tuf/``) need ``admin:dashboard:read``, Warehouse's permission for its
admin, which the accounts named in ``dev.admins`` hold (default: the host's
account). Where Warehouse sends the anonymous to its login page, this host
answers 401 with a Basic challenge; an account that is not an admin gets 403.
"""

from __future__ import annotations

import hmac
from typing import Any

from pyramid.authentication import extract_http_basic_credentials
from pyramid.httpexceptions import HTTPForbidden, HTTPUnauthorized
from pyramid.interfaces import ISecurityPolicy
from pyramid.security import Allowed, Denied
from zope.interface import implementer

#: Warehouse's admin permissions the admins hold here (``Permissions.AdminDashboardRead``).
ADMIN_PERMISSIONS = frozenset({"admin:dashboard:read"})
REALM = "warehouse-tuf development host"


def admins(settings: dict[str, Any]) -> set[str]:
    """``dev.admins``: account names separated by commas or spaces."""
    return set(settings["dev.admins"].replace(",", " ").split())


@implementer(ISecurityPolicy)
class BasicAuthSecurityPolicy:
    """Identity from HTTP basic auth; admin permissions for the accounts in ``dev.admins``."""

    def identity(self, request: Any) -> str | None:
        credentials = extract_http_basic_credentials(request)
        if credentials is None:
            return None
        settings = request.registry.settings
        valid = (hmac.compare_digest(credentials.username.encode(), settings["dev.username"].encode())
                 & hmac.compare_digest(credentials.password.encode(), settings["dev.password"].encode()))
        return credentials.username if valid else None

    def authenticated_userid(self, request: Any) -> str | None:
        return request.identity

    def permits(self, request: Any, context: Any, permission: str) -> Allowed | Denied:
        user = request.identity
        if user is None:
            return Denied("not authenticated")
        if permission in ADMIN_PERMISSIONS and user in admins(request.registry.settings):
            return Allowed(f"{user} is an admin")
        return Denied(f"{user} does not have {permission}")

    def remember(self, request: Any, userid: Any, **kw: Any) -> list:
        return []

    def forget(self, request: Any, **kw: Any) -> list:
        return []


def admin_forbidden(exc: Any, request: Any) -> Any:
    """The admin pages refuse: 401 with a Basic challenge when anonymous, else 403."""
    if request.identity is None:
        return HTTPUnauthorized(body="Log in with the development host's account.\n",
                                content_type="text/plain", charset="utf-8",
                                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})
    return HTTPForbidden(body=f"{request.identity} is not an admin (dev.admins).\n",
                         content_type="text/plain", charset="utf-8")


def includeme(config: Any) -> None:
    config.set_security_policy(BasicAuthSecurityPolicy())
    config.add_forbidden_view(admin_forbidden, path_info=r"^/admin/")
