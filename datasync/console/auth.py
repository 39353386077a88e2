"""Who is looking at the console, and what they may do.

On Azure, App Service authentication (Easy Auth) signs the user in and passes the
principal in ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with ``claims``); role
``DataSync.Reader`` may view, ``DataSync.Operator`` may view and act. No principal → 401.

Locally the console listens on loopback only: anyone there may view, and actions need the
console token (``DATASYNC_CONSOLE_TOKEN`` or one generated at start), entered once on the
sign-in page and kept in an HttpOnly cookie (as a hash, never the token itself).

Either way actions exist only with ``DATASYNC_CONSOLE_ACTIONS=true``; every form carries a
CSRF token (double-submit: a random cookie that the form must repeat).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CSRF_COOKIE",
    "OPERATOR_ROLE",
    "READER_ROLE",
    "TOKEN_COOKIE",
    "Viewer",
    "check_csrf",
    "new_csrf",
    "principal_viewer",
    "token_digest",
]

READER_ROLE = "DataSync.Reader"
OPERATOR_ROLE = "DataSync.Operator"
PRINCIPAL_HEADER = "x-ms-client-principal"
TOKEN_COOKIE = "datasync_console"
CSRF_COOKIE = "datasync_csrf"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a request: ``actor`` for the audit log, what they may do."""

    actor: str
    can_view: bool
    can_act: bool
    signed_in: bool = False
    why_not: str | None = None
    """Why actions are refused to this viewer (shown on the page), None when they may act."""


def token_digest(token: str) -> str:
    """What the cookie holds for a console token: a keyed hash, not the token."""
    return hmac.new(token.encode(), b"datasync-console", hashlib.sha256).hexdigest()


def local_viewer(token: str, cookie: str | None, actions: bool) -> Viewer:
    """A viewer on the loopback console: actions need the token's cookie."""
    signed = cookie is not None and hmac.compare_digest(cookie, token_digest(token))
    if not actions:
        return Viewer("console-token" if signed else "local", True, False, signed, _READ_ONLY)
    if not signed:
        return Viewer("local", True, False, False, "sign in with the console token to act")
    return Viewer("console-token", True, True, True)


_READ_ONLY = "the console is read-only (set DATASYNC_CONSOLE_ACTIONS=true to enable actions)"


def principal_viewer(header: str | None, actions: bool) -> Viewer | None:
    """The viewer App Service authentication vouches for, or None when there is none
    (or it cannot be read: a request without a valid principal is not signed in)."""
    if not header:
        return None
    principal = _decode(header)
    if principal is None:
        return None
    claims = principal.get("claims")
    if not isinstance(claims, list):
        return None
    role_typ = principal.get("role_typ")
    name_typ = principal.get("name_typ")
    roles: set[str] = set()
    names: dict[str, str] = {}
    for claim in claims:
        if not isinstance(claim, dict):
            continue
        typ, val = claim.get("typ"), claim.get("val")
        if not isinstance(typ, str) or not isinstance(val, str):
            continue
        if typ in ("roles", "role") or (isinstance(role_typ, str) and typ == role_typ):
            roles.add(val)
        names.setdefault(typ, val)
    name = next(
        (
            names[k]
            for k in (name_typ, "preferred_username", "name", "email")
            if isinstance(k, str) and k in names
        ),
        "unknown",
    )
    actor = f"aad:{name}"
    operator = OPERATOR_ROLE in roles
    viewer = operator or READER_ROLE in roles
    if not viewer:
        return Viewer(actor, False, False, True, f"role {READER_ROLE} is needed to view")
    if not operator:
        return Viewer(actor, True, False, True, f"role {OPERATOR_ROLE} is needed to act")
    if not actions:
        return Viewer(actor, True, False, True, _READ_ONLY)
    return Viewer(actor, True, True, True)


def _decode(header: str) -> dict[str, Any] | None:
    try:
        raw = base64.b64decode(header + "=" * (-len(header) % 4), validate=False)
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def new_csrf() -> str:
    """A fresh CSRF token (the cookie value the forms repeat)."""
    return secrets.token_urlsafe(24)


def check_csrf(cookie: str | None, form_value: str | None) -> bool:
    """True when the form repeats the request's CSRF cookie."""
    return bool(cookie and form_value) and hmac.compare_digest(str(cookie), str(form_value))
