"""Who is calling: users, passwords, tokens, API keys and roles (design §6).

    auth = Authenticator(data_plane, SecurityConfig())
    auth.add_user("alice", "a long password")                  # role "user"
    tokens = auth.login("alice", "a long password", client="10.0.0.7")
    principal = auth.authenticate(bearer=tokens.access_token)  # on every request

A credential once verified is trusted for at most ``cache_seconds`` (1 s) by this server: a change
made here (a user removed, a password or role changed, a key revoked) empties that cache at
once, so it takes effect on the very next request; one made through another server takes effect
here within that second. API keys are long random secrets
(``htcgrid_<key_id>_<secret>``), stored as a SHA-256 digest: a slow hash is for guessable
passwords, and would only slow down every request made with a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from htcgrid.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    LoginThrottle,
    hash_password,
    verify_password,
)
from htcgrid.auth.records import AuthRecords, KeyRecord, User, key_id, new_uid, role, user_name
from htcgrid.auth.tokens import Claims, TokenKind, sign, verify
from htcgrid.dataplane import DataPlane
from htcgrid.errors import AuthError, Conflict, NotFound, ValidationError
from htcgrid.settings import SecurityConfig

API_KEY_PREFIX = "htcgrid_"
SECRET_RELOAD_SECONDS = 5.0
CACHE_SECONDS = 1.0  # the longest a verified credential is trusted without reading its records
CACHE_SIZE = 1024


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str
    role: str
    via: str  # "token", "api_key", or "open" when the server runs without authentication

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def may_deploy(self) -> bool:
        """Admins and deployers may deploy, roll back and delete functions."""
        return self.role in ("admin", "deployer")

    @property
    def owner(self) -> str | None:
        """Whose sessions this caller may see: None (all) for an admin."""
        return None if self.is_admin else self.name


OPEN = Principal("", "admin", "open")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: float
    refresh_expires_in: float
    user: str
    role: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
            "user": self.user,
            "role": self.role,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_api_key(text: str) -> tuple[str, str] | None:
    """``htcgrid_<key_id>_<secret>`` → ``(key_id, secret)``; None for anything else."""
    if not text.startswith(API_KEY_PREFIX):
        return None
    kid, sep, secret = text[len(API_KEY_PREFIX) :].partition("_")
    return (kid, secret) if sep and secret else None


class Authenticator:
    def __init__(
        self,
        data: DataPlane,
        config: SecurityConfig | None = None,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.records = AuthRecords(data)
        self.cache_seconds = min(cache_seconds, CACHE_SECONDS)
        # digest of the credentials → (trusted until, by ``clock``; the principal)
        self._verified: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._epoch = 0  # moves on each forget_verified: a check begun before is not kept
        self.config = config or SecurityConfig()
        self.clock = clock
        self.throttle = LoginThrottle(
            self.config.login_free_attempts, self.config.login_max_delay_seconds
        )
        self._secret: bytes | None = None
        self._secret_read_at = -SECRET_RELOAD_SECONDS

    def _signing_secret(self, reload: bool = False) -> bytes:
        now = time.monotonic()
        if self._secret is None or (reload and now - self._secret_read_at > SECRET_RELOAD_SECONDS):
            self._secret = self.records.secret()
            self._secret_read_at = now
        return self._secret

    def start(self) -> None:
        """Create the signing secret if this is the grid's first start."""
        self._signing_secret()

    # ---- users ---------------------------------------------------------------------------

    def add_user(self, name: str, password: str, role_name: str = "user") -> User:
        name, role_name = user_name(name), role(role_name)
        if self.records.get_user(name) is not None:
            raise Conflict(f"user {name} already exists")
        user = User(name, role_name, hash_password(password), new_uid(), 1, self.clock())
        self.records.put_user(user)
        self.forget_verified()
        return user

    def user(self, name: str) -> User:
        found = self.records.get_user(user_name(name))
        if found is None:
            raise NotFound(f"no user {name}")
        return found

    def users(self) -> list[User]:
        found = (self.records.get_user(n) for n in self.records.user_names())
        return [u for u in found if u is not None]

    def has_users(self) -> bool:
        return bool(self.records.user_names())

    def remove_user(self, name: str) -> None:
        """Delete the user and their API keys; their tokens stop working at once."""
        user = self.user(name)
        for key in self.api_keys(user.name):
            self.records.delete_key(key.key_id)
        self.records.delete_user(user.name)
        self.forget_verified()

    def set_password(self, name: str, password: str) -> User:
        """New password; every token issued before stops working (the generation moves on)."""
        user = self.user(name)
        changed = replace(
            user, password_hash=hash_password(password), generation=user.generation + 1
        )
        self.records.put_user(changed)
        self.forget_verified()
        return changed

    def set_role(self, name: str, role_name: str) -> User:
        user = self.user(name)
        changed = replace(user, role=role(role_name), generation=user.generation + 1)
        self.records.put_user(changed)
        self.forget_verified()
        return changed

    # ---- API keys ------------------------------------------------------------------------

    def create_key(self, owner: str, label: str = "") -> tuple[KeyRecord, str]:
        """A new API key for ``owner``; the secret is returned here once and never stored."""
        if not isinstance(label, str) or len(label) > 200:
            raise ValidationError("label must be a string of at most 200 characters")
        user = self.user(owner)
        kid, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        record = KeyRecord(kid, user.name, user.uid, label, _digest(secret), self.clock())
        self.records.put_key(record)
        self.forget_verified()
        return record, f"{API_KEY_PREFIX}{kid}_{secret}"

    def api_keys(self, owner: str | None = None) -> list[KeyRecord]:
        found = (self.records.get_key(k) for k in self.records.key_ids())
        return [k for k in found if k is not None and owner in (None, k.user)]

    def revoke_key(self, kid: str) -> None:
        if self.records.get_key(key_id(kid)) is None:
            raise NotFound(f"no API key {kid}")
        self.records.delete_key(kid)
        self.forget_verified()

    # ---- tokens --------------------------------------------------------------------------

    def login(self, name: str, password: str, client: str = "") -> TokenPair:
        """Tokens for a correct password; repeated wrong ones are refused for a while."""
        throttle_key = f"{str(name).lower()[:64]}|{client}"
        self.throttle.check(throttle_key)
        try:
            user = self.records.get_user(user_name(name))
        except ValidationError:
            user = None
        ok = isinstance(password, str) and len(password) <= MAX_PASSWORD_LENGTH
        if not (ok and verify_password(user.password_hash if user else None, password)):
            self.throttle.failed(throttle_key)
            raise AuthError("wrong user name or password")
        assert user is not None
        self.throttle.succeeded(throttle_key)
        return self.issue(user)

    def _claims(self, user: User, kind: TokenKind, lifetime: float) -> Claims:
        now = self.clock()
        return Claims(user.name, user.uid, user.generation, user.role, kind, now, now + lifetime)

    def issue(self, user: User) -> TokenPair:
        c = self.config
        access = self._claims(user, "access", c.access_token_seconds)
        refresh = self._claims(user, "refresh", c.refresh_token_seconds)
        secret = self._signing_secret()
        return TokenPair(
            sign(access, secret),
            sign(refresh, secret),
            c.access_token_seconds,
            c.refresh_token_seconds,
            user.name,
            user.role,
        )

    def refresh(self, refresh_token: str) -> TokenPair:
        """A new access token for a valid refresh token (which itself is returned unchanged)."""
        claims = self._verify(refresh_token, "refresh")
        user = self._current(claims)
        access = self._claims(user, "access", self.config.access_token_seconds)
        return TokenPair(
            sign(access, self._signing_secret()),
            refresh_token,
            self.config.access_token_seconds,
            max(0.0, claims.exp - self.clock()),
            user.name,
            user.role,
        )

    def _verify(self, token: str, kind: TokenKind) -> Claims:
        if not isinstance(token, str) or len(token) > 4096:
            raise AuthError("invalid token")
        try:
            return verify(token, self._signing_secret(), kind, self.clock())
        except AuthError as first:
            if first.code != AuthError.code:
                raise
            # the secret may have been created or replaced by another server since we read it
            secret = self._signing_secret(reload=True)
            return verify(token, secret, kind, self.clock())

    def _current(self, claims: Claims) -> User:
        user = self.records.get_user(claims.sub)
        if user is None or user.uid != claims.uid or user.generation != claims.gen:
            raise AuthError("token revoked: the user was removed or changed; log in again")
        return user

    # ---- every request -------------------------------------------------------------------

    def authenticate(self, bearer: str | None = None, api_key: str | None = None) -> Principal:
        """The caller behind an ``Authorization: Bearer`` value (a token, or an API key) or an
        ``x-api-key`` value. Every credential sent must be valid, and name the same user:
        one bad credential beside a good one is refused, not ignored."""
        if not bearer and not api_key:
            raise AuthError("authentication required: send 'Authorization: Bearer <token>'")
        if self.cache_seconds <= 0:
            return self._check(bearer, api_key)[1]
        # a digest, so the cache never holds a secret; NUL cannot occur in a header value
        digest = hashlib.sha256(f"{bearer or ''}\0{api_key or ''}".encode()).digest()
        now = self.clock()
        with self._verified_lock:
            hit = self._verified.get(digest)
        if hit is not None and now < hit[0]:
            return hit[1]
        epoch = self._epoch
        until, principal = self._check(bearer, api_key)
        with self._verified_lock:  # failures are never kept: each is checked in full
            if epoch == self._epoch:
                self._verified[digest] = (min(until, now + self.cache_seconds), principal)
                self._verified.move_to_end(digest)
                while len(self._verified) > CACHE_SIZE:
                    self._verified.popitem(last=False)
        return principal

    def forget_verified(self) -> None:
        """Trust no credential verified before now (a user, key or generation changed)."""
        with self._verified_lock:
            self._epoch += 1
            self._verified.clear()

    def _check(self, bearer: str | None, api_key: str | None) -> tuple[float, Principal]:
        """The caller, read from the records, and until when that may be trusted (a token's
        expiry; else forever, as far as the credential goes)."""
        found = [self._from_bearer(bearer)] if bearer else []
        if api_key:
            found.append((float("inf"), self._from_api_key(api_key)))
        if len({p.name for _, p in found}) > 1:
            raise AuthError("the bearer token and the API key belong to different users")
        return min(until for until, _ in found), found[-1][1]

    def _from_bearer(self, bearer: str) -> tuple[float, Principal]:
        if bearer.startswith(API_KEY_PREFIX):
            return float("inf"), self._from_api_key(bearer)
        claims = self._verify(bearer, "access")
        user = self._current(claims)
        return claims.exp, Principal(user.name, user.role, "token")

    def _from_api_key(self, text: str) -> Principal:
        parts = split_api_key(text)
        record = None
        if parts is not None and len(text) <= 200:
            try:
                record = self.records.get_key(key_id(parts[0]))
            except NotFound:
                record = None
        if record is None or parts is None:
            raise AuthError("invalid API key")
        if not hmac.compare_digest(record.secret_sha256, _digest(parts[1])):
            raise AuthError("invalid API key")
        user = self.records.get_user(record.user)
        if user is None or user.uid != record.user_uid:
            raise AuthError("invalid API key: its user was removed")
        return Principal(user.name, user.role, "api_key")
