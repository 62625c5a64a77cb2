"""Signed tokens: ``<claims>.<signature>``, both base64url, the signature an HMAC-SHA256 of the
claims under the grid's secret.

A token says who (``sub`` and the user's ``uid``), as what (``role``), until when (``exp``) and
under which ``gen``eration of the user's record. The server checks the generation against the
stored user on every request, so changing a password or removing a user voids every token at
once, while the HMAC check itself needs no storage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from htcgrid.errors import AuthError, TokenExpired

TokenKind = Literal["access", "refresh"]
_DOMAIN = b"htcgrid-token-v1."


@dataclass(frozen=True)
class Claims:
    sub: str  # user name
    uid: str  # the user record's random id: a re-created user is a different user
    gen: int  # the user record's generation when the token was issued
    role: str
    typ: TokenKind
    iat: float
    exp: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, _DOMAIN + body.encode(), hashlib.sha256).digest())


def sign(claims: Claims, secret: bytes) -> str:
    body = _b64(json.dumps(asdict(claims), separators=(",", ":")).encode())
    return f"{body}.{_signature(secret, body)}"


def looks_like_token(text: str) -> bool:
    return text.count(".") == 1


def verify(token: str, secret: bytes, kind: TokenKind, now: float) -> Claims:
    """The claims of a genuine, unexpired token of ``kind``; raises AuthError otherwise."""
    body, _, signature = token.partition(".")
    if not body or not hmac.compare_digest(signature.encode(), _signature(secret, body).encode()):
        raise AuthError("invalid token")
    try:
        data: Any = json.loads(_unb64(body))
        claims = Claims(**data)
    except (ValueError, TypeError, binascii.Error):
        raise AuthError("invalid token") from None
    if claims.typ != kind:
        raise AuthError(f"not an {kind} token" if kind == "access" else f"not a {kind} token")
    if not claims.exp > now:
        raise TokenExpired(f"{kind} token expired; log in or refresh")
    return claims
