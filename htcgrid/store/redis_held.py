"""Held tasks and cancels of the Redis task store: ``release``, ``fail_held``, ``cancel_tasks``
and ``cancel_session``, each one Lua script (run after ``redis_scripts.PRELUDE``).

A held task is ``pending`` (state ``st``, and the session's ``n:pending`` counter), marked
``hd`` and in no queue. ``release`` clears the mark and puts it in its queue with the
prelude's ``enqueue``, at the member it was given at submit, so it takes its original place;
``finish`` clears the mark of a task that ends. Each script visits only the indexes it is
given (the whole session for ``cancel_session``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import Script

from htcgrid.errors import NotFound
from htcgrid.models import CancelCounts, ErrorInfo
from htcgrid.store import redis_scripts as lua
from htcgrid.store.redis_connect import translate_errors
from htcgrid.store.redis_layout import Keys

# Shared head: ARGV P, sid, now, then the indexes (or index, error pairs) from ARGV[first].
# ``tasks`` are the session's given indexes below its task count, or false when unknown.
NAMED = r"""
local sid, now = ARGV[2], ARGV[3]
local skey = session_key(sid)
local tc = tonumber(redis.call('HGET', skey, 'tc') or '-1')
local function named(first, step)
  local found = {}
  for i = first, #ARGV, step do
    local index = tonumber(ARGV[i])
    if index < tc then found[#found + 1] = {index, ARGV[i + 1]} end
  end
  return found
end
local function held(tid)
  local t = redis.call('HMGET', task_key(tid), 'st', 'hd')
  return t[1] == 'pending' and t[2] ~= false
end
"""

# ARGV: P, sid, now, index... (sorted, distinct). Returns the indexes released.
RELEASE = (
    NAMED
    + r"""
local released = {}
for _, pair in ipairs(named(4, 1)) do
  local tid = sid .. '_' .. pair[1]
  if held(tid) then
    local key = task_key(tid)
    redis.call('HDEL', key, 'hd')
    enqueue(tid, key, sid)
    released[#released + 1] = pair[1]
  end
end
flush()
return released
"""
)

# ARGV: P, sid, now, then (index, error JSON) pairs sorted by index. Returns those failed.
FAIL_HELD = (
    NAMED
    + r"""
local failed = {}
for _, pair in ipairs(named(4, 2)) do
  local tid = sid .. '_' .. pair[1]
  if held(tid) then
    local key = task_key(tid)
    redis.call('HSET', key, 'err', pair[2])
    finish(tid, key, sid, 'pending', 'failed', now)
    failed[#failed + 1] = pair[1]
  end
end
flush()
return failed
"""
)

# ARGV: P, sid, now, whole ("1": every task, and the session is marked cancelled), then
# the indexes (sorted, distinct) when not whole. Returns {pending, processing} cancelled, or
# nil for an unknown session.
CANCEL = (
    NAMED
    + r"""
if tc < 0 then return false end
local whole = ARGV[4] == '1'
local indexes = {}
if whole then
  for i = 0, tc - 1 do indexes[#indexes + 1] = i end
else
  for _, pair in ipairs(named(5, 1)) do indexes[#indexes + 1] = pair[1] end
end
local counts = {pending = 0, processing = 0}
for _, i in ipairs(indexes) do
  local tid = sid .. '_' .. i
  local key = task_key(tid)
  local state = redis.call('HGET', key, 'st')
  if state == 'pending' or state == 'processing' then
    if state == 'pending' then
      dequeue(tid, key, sid)
    else
      redis.call('ZREM', P .. 'leases', tid)
    end
    finish(tid, key, sid, state, 'cancelled', now)
    counts[state] = counts[state] + 1
  end
end
if whole then redis.call('HSET', skey, 'cx', 1) end
flush()
return {counts.pending, counts.processing}
"""
)


def _named(indexes: Sequence[int]) -> list[int]:
    return sorted({int(i) for i in indexes if int(i) >= 0})


class RedisHeld:
    keys: Keys
    _held_scripts: dict[str, Script] | None = None

    def _run(self, script: Script, *args: Any) -> Any:
        raise NotImplementedError

    def _held_script(self, name: str) -> Script:
        if self._held_scripts is None:
            bodies = {"release": RELEASE, "fail": FAIL_HELD, "cancel": CANCEL}
            register = self._client.register_script  # type: ignore[attr-defined]
            self._held_scripts = {k: register(lua.writing(v)) for k, v in bodies.items()}
        return self._held_scripts[name]

    @translate_errors
    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        released = self._run(self._held_script("release"), session_id, now, *_named(indexes))
        return [int(i) for i in released]

    @translate_errors
    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        errors = {i: e for i, e in failures if i >= 0}
        pairs = [x for i in sorted(errors) for x in (i, errors[i].to_json())]
        failed = self._run(self._held_script("fail"), session_id, now, *pairs)
        return [int(i) for i in failed]

    @translate_errors
    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        return self._cancel(session_id, now, "1", [])

    @translate_errors
    def cancel_tasks(self, session_id: str, indexes: Sequence[int], now: float) -> CancelCounts:
        return self._cancel(session_id, now, "0", _named(indexes))

    def _cancel(self, session_id: str, now: float, whole: str, indexes: list[int]) -> CancelCounts:
        counts = self._run(self._held_script("cancel"), session_id, now, whole, *indexes)
        if counts is None:
            raise NotFound(f"no session {session_id}")
        return CancelCounts(int(counts[0]), int(counts[1]))
