"""Users, API keys and the token secret, kept as small JSON records on the data plane.

The data plane is the one role every deployment has and every backend implements the same way
(bytes by key), so authentication works on SQLite, PostgreSQL, Redis or S3 without a line of
backend code. The layout, built only here::

    auth/secret                 the HMAC key that signs tokens (created on first start)
    auth/users/<name>.json      one user: role, argon2 hash, uid, generation
    auth/keys/<key_id>.json     one API key: its user, label, SHA-256 of its secret
    auth/index/users.json       names of all users  (the data plane cannot list keys)
    auth/index/keys.json        ids of all API keys

A record is the truth; an index only serves listing. Each index is a ``Document``, changed by
compare-and-set, so administrators adding users at the same instant on many servers never
drop a name from it.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from htcgrid.dataplane import DataPlane
from htcgrid.dataplane.document import Document
from htcgrid.errors import NotFound, ValidationError

ROLES = ("admin", "deployer", "user")  # a deployer is a user who may also deploy functions
USER_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
SECRET_BYTES = 32


def user_name(name: object) -> str:
    """The canonical (lower-case) user name; raises ValidationError for anything unsafe."""
    if not isinstance(name, str) or not USER_NAME_PATTERN.fullmatch(name.lower()):
        raise ValidationError(
            "user name must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name.lower()


def key_id(value: object) -> str:
    if not isinstance(value, str) or not KEY_ID_PATTERN.fullmatch(value):
        raise NotFound(f"no API key {str(value)[:40]!r}")
    return value


def role(value: object) -> str:
    if value not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}")
    return str(value)


# ---- keys on the data plane ---------------------------------------------------------------

SECRET_KEY = "auth/secret"
USERS_INDEX = "auth/index/users.json"
KEYS_INDEX = "auth/index/keys.json"


def user_record_key(name: str) -> str:
    return f"auth/users/{user_name(name)}.json"


def key_record_key(kid: str) -> str:
    return f"auth/keys/{key_id(kid)}.json"


# ---- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    uid: str
    generation: int
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at}


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    user: str
    user_uid: str
    label: str
    secret_sha256: str
    created_at: float

    def public(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "user": self.user,
            "label": self.label,
            "created_at": self.created_at,
        }


def new_uid() -> str:
    return secrets.token_hex(8)


class AuthRecords:
    """Reads and writes the records above; safe for any number of threads and processes."""

    def __init__(self, data: DataPlane) -> None:
        self.data = data

    def _get_json(self, key: str) -> Any:
        try:
            return json.loads(self.data.get(key))
        except NotFound:
            return None

    def _put_json(self, key: str, value: Any) -> None:
        self.data.put(key, json.dumps(value, sort_keys=True).encode())

    # ---- secret --------------------------------------------------------------------------

    def secret(self) -> bytes:
        """The signing secret, created if missing (once: racing servers all read the winner's)."""
        try:
            return bytes.fromhex(self.data.get(SECRET_KEY).decode())
        except NotFound:
            self.data.put_if_absent(SECRET_KEY, secrets.token_hex(SECRET_BYTES).encode())
            return bytes.fromhex(self.data.get(SECRET_KEY).decode())

    # ---- users ---------------------------------------------------------------------------

    def get_user(self, name: str) -> User | None:
        found = self._get_json(user_record_key(name))
        return User(**found) if found else None

    def put_user(self, user: User) -> None:
        self._put_json(user_record_key(user.name), asdict(user))
        self._index_add(USERS_INDEX, user.name)

    def delete_user(self, name: str) -> None:
        self.data.delete(user_record_key(name))
        self._index_remove(USERS_INDEX, name)

    def user_names(self) -> list[str]:
        return self._index(USERS_INDEX)

    # ---- API keys ------------------------------------------------------------------------

    def get_key(self, kid: str) -> KeyRecord | None:
        found = self._get_json(key_record_key(kid))
        return KeyRecord(**found) if found else None

    def put_key(self, record: KeyRecord) -> None:
        self._put_json(key_record_key(record.key_id), asdict(record))
        self._index_add(KEYS_INDEX, record.key_id)

    def delete_key(self, kid: str) -> None:
        self.data.delete(key_record_key(kid))
        self._index_remove(KEYS_INDEX, kid)

    def key_ids(self) -> list[str]:
        return self._index(KEYS_INDEX)

    # ---- indexes -------------------------------------------------------------------------

    def _index(self, key: str) -> list[str]:
        names = Document(self.data, key).read()
        return sorted(names) if isinstance(names, list) else []

    def _index_add(self, key: str, name: str) -> None:
        if name not in self._index(key):
            Document(self.data, key).update(lambda names: sorted({*(names or []), name}))

    def _index_remove(self, key: str, name: str) -> None:
        if name in self._index(key):
            Document(self.data, key).update(lambda names: sorted(set(names or []) - {name}))
