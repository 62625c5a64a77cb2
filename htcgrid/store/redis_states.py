"""``TaskStore.tasks_in_state`` on Redis: a session's tasks in one state, a page at a time.

Failed tasks have an index of their own, ``P failed:<id>``, a sorted set of the session's
failed tasks by index, kept by the scripts: a task enters it where it ends failed (the
prelude's ``finish``), leaves it where ``retry`` sends it back, and the set goes with its
session. A page of failed tasks is one ``ZRANGEBYSCORE``. While the set does not hold
every failed task the session counts (tasks that failed before the set existed), and for the
other states, one call reads the state of at most ``WINDOW`` tasks in index order, so its
work stays bounded and the next call goes on from there.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.commands.core import Script

from htcgrid.models import TaskRecord, TaskState
from htcgrid.store import redis_scripts as lua
from htcgrid.store.redis_connect import translate_errors
from htcgrid.store.redis_layout import RECORD_FIELDS, Keys, task_record
from htcgrid.store.state_pages import Page, after_of, check_limit

WINDOW = 1000  # tasks whose state one call reads (a few ms of the server)

# ARGV: P, sid, state, after, limit, window, field... Returns {max_attempts or false,
# next "after" or -1, {{tid, {values}}...}}.
STATES = r"""
local sid, state = ARGV[2], ARGV[3]
local after, limit, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
local s = redis.call('HMGET', session_key(sid), 'tc', 'ma', 'n:failed')
if not s[1] then return {false, -1, {}} end
local tc = tonumber(s[1])
local index_of = function(tid) return tonumber(string.match(tid, '_(%d+)$')) end
local tids, next_after = {}, -1
local failed = P .. 'failed:' .. sid
if state == 'failed' and redis.call('ZCARD', failed) == tonumber(s[3] or '0') then
  tids = redis.call('ZRANGEBYSCORE', failed, '(' .. after, '+inf', 'LIMIT', 0, limit)
  if #tids == limit then next_after = index_of(tids[#tids]) end
else
  local last = math.min(tc - 1, after + window)
  for i = after + 1, last do
    local tid = sid .. '_' .. i
    if redis.call('HGET', task_key(tid), 'st') == state then
      tids[#tids + 1] = tid
      if #tids == limit then
        last = i
        break
      end
    end
  end
  if last < tc - 1 then next_after = last end
end
local rows = {}
for _, tid in ipairs(tids) do
  rows[#rows + 1] = {tid, redis.call('HMGET', task_key(tid), unpack(fields))}
end
return {s[2], next_after, rows}
"""


class RedisStates:
    url: str
    keys: Keys
    _client: Redis
    _states_script: Script | None = None

    @translate_errors
    def tasks_in_state(
        self, session_id: str, state: TaskState, cursor: str | None = None, limit: int = 100
    ) -> Page:
        after, limit = after_of(cursor), check_limit(limit)
        if self._states_script is None:
            self._states_script = self._client.register_script(lua.reading(STATES))
        args: list[Any] = [self.keys.prefix, session_id, TaskState(state).value, after, limit]
        max_attempts, next_after, rows = self._states_script(args=[*args, WINDOW, *RECORD_FIELDS])
        if max_attempts is None:
            return [], None
        records: list[TaskRecord] = [
            task_record(tid.decode(), values, int(max_attempts)) for tid, values in rows
        ]
        return records, None if int(next_after) < 0 else str(next_after)
