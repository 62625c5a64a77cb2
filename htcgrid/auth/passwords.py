"""Password hashes (argon2id, salted, deliberately slow) and the brake on guessing them.

Hashing is bounded to a few at a time: each argon2 call takes tens of milliseconds and 64 MiB,
so a burst of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from htcgrid.errors import TooManyAttempts, ValidationError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()
_slots = threading.BoundedSemaphore(max(2, min(os.cpu_count() or 2, 8)))


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("htcgrid: a hash to spend time on for unknown users")


def check_password(password: object) -> str:
    if not isinstance(password, str):
        raise ValidationError("password must be a string")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    return password


def hash_password(password: str) -> str:
    with _slots:
        return _hasher.hash(check_password(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown user (``None``) costs the same time."""
    with _slots:
        try:
            matched = _hasher.verify(stored_hash or _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    return matched and stored_hash is not None


class LoginThrottle:
    """After ``free_attempts`` wrong passwords for one key (user and client), each further
    attempt must wait twice as long as the previous one, up to ``max_delay_seconds``. While
    a wait is in force every attempt is refused unchecked, so guessing gets no faster by
    sending more. A correct password clears the key."""

    def __init__(
        self,
        free_attempts: int = 3,
        max_delay_seconds: float = 60.0,
        base_delay_seconds: float = 1.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_attempts = free_attempts
        self.max_delay_seconds = max_delay_seconds
        self.base_delay_seconds = base_delay_seconds
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Raises TooManyAttempts while ``key`` must wait."""
        with self._lock:
            _, blocked_until = self._failures.get(key, (0, 0.0))
        wait = blocked_until - self.clock()
        if wait > 0:
            raise TooManyAttempts(
                f"too many wrong passwords; try again in {wait:.0f} s", retry_after_seconds=wait
            )

    def failed(self, key: str) -> None:
        with self._lock:
            count, _ = self._failures.pop(key, (0, 0.0))
            count += 1
            delay = 0.0
            if count > self.free_attempts:
                steps = min(count - self.free_attempts - 1, 30)
                delay = min(self.base_delay_seconds * 2**steps, self.max_delay_seconds)
            self._failures[key] = (count, self.clock() + delay)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
