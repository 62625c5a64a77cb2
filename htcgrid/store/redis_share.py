"""The claim of the Redis task store, shared fairly between owners (``htcgrid.store.share``):
one Lua script (run after ``redis_scripts.PRELUDE``) and the method that calls it.

Pending tasks wait in one sorted set per function and owner, ``P queue:<fn>:<owner>``;
``P owners:<fn>`` lists the owners that may have one (a claim that finds a queue gone drops
its owner), and the hash ``P running`` counts each owner's processing tasks (``move`` in the
prelude keeps it). The claimer passes the share records it has read (``ShareBook``, at most a
second old), so the script needs no reads of metadata. With one owner and no quota the claim
pops as it always did; with more, the script splits the batch by the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.commands.core import Script

from htcgrid.models import Lease, split_task_id
from htcgrid.store.redis_layout import text_of
from htcgrid.store.redis_scripts import writing
from htcgrid.store.share import MetaShares

# ARGV: P, agent, max_tasks, expires_at, now, k, then k triples (owner, share, max_running
# or ''), then function... (none: every function). Owners without a triple weigh 1.
# Returns per lease: tid, attempt, max_attempts, timeout, function, retry, payload, ref,
# submitted_at.
CLAIM = r"""
local agent, max, expires, now = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local k = tonumber(ARGV[6])
local weight, quota = {}, {}
for i = 7, 6 + 3 * k, 3 do
  weight[ARGV[i]] = tonumber(ARGV[i + 1])
  if ARGV[i + 2] ~= '' then quota[ARGV[i]] = tonumber(ARGV[i + 2]) end
end
local functions = {}
for i = 7 + 3 * k, #ARGV do functions[#functions + 1] = ARGV[i] end
if #functions == 0 then functions = redis.call('SMEMBERS', P .. 'functions') end

-- owner -> the keys of its queues of those functions
local queues, owners = {}, {}
for _, fn in ipairs(functions) do
  for _, owner in ipairs(redis.call('SMEMBERS', P .. 'owners:' .. fn)) do
    local key = queue_key(fn, owner)
    if redis.call('EXISTS', key) == 1 then
      if not queues[owner] then
        queues[owner] = {}
        owners[#owners + 1] = owner
      end
      table.insert(queues[owner], key)
    else
      redis.call('SREM', P .. 'owners:' .. fn, owner)
    end
  end
end

-- Up to n members of one owner's queues, highest priority first, FIFO within one: members
-- start with 30 digits that order them, compared alone so the server's collation locale
-- cannot interfere.
local function pop(keys, n, popped)
  if #keys == 1 then
    local r = redis.call('ZPOPMIN', keys[1], n)
    for i = 1, #r, 2 do popped[#popped + 1] = r[i] end
    return #r / 2
  end
  local heads = {}
  for _, key in ipairs(keys) do
    local r = redis.call('ZRANGE', key, 0, n - 1, 'WITHSCORES')
    for i = 1, #r, 2 do
      heads[#heads + 1] = {tonumber(r[i + 1]), string.sub(r[i], 1, 30), r[i], key}
    end
  end
  table.sort(heads, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local got = math.min(n, #heads)
  for i = 1, got do
    redis.call('ZREM', heads[i][4], heads[i][3])
    popped[#popped + 1] = heads[i][3]
  end
  return got
end

local popped = {}
if #owners == 1 and not quota[owners[1]] then
  pop(queues[owners[1]], max, popped)
elseif #owners > 0 then
  local running = {}
  local counts = redis.call('HMGET', P .. 'running', unpack(owners))
  for i, owner in ipairs(owners) do running[owner] = math.max(0, tonumber(counts[i] or 0)) end
  local function room(owner) return (quota[owner] or math.huge) - running[owner] end
  local active = {}
  for _, owner in ipairs(owners) do
    if room(owner) > 0 then active[owner] = true end
  end
  local wanted = max
  while wanted > 0 and next(active) do
    -- the slots of this round, one at a time to the lowest (running + given) / share
    local given, any = {}, false
    for _ = 1, wanted do
      local best, load = nil, math.huge
      for owner in pairs(active) do
        local n = given[owner] or 0
        local l = (running[owner] + n) / (weight[owner] or 1)
        if room(owner) - n > 0 and (l < load or (l == load and owner < best)) then
          best, load = owner, l
        end
      end
      if not best then break end
      given[best] = (given[best] or 0) + 1
      any = true
    end
    if not any then break end
    for owner, n in pairs(given) do
      local got = pop(queues[owner], n, popped)
      running[owner] = running[owner] + got
      wanted = wanted - got
      if got < n or room(owner) <= 0 then active[owner] = nil end
    end
  end
end

local leases = {}
for _, member in ipairs(popped) do
  local tid = string.sub(member, 31)
  local key = task_key(tid)
  local sid = session_of(tid)
  local s = session(sid)
  local attempt = redis.call('HINCRBY', key, 'at', 1)
  redis.call('HSET', key, 'st', 'processing', 'ow', agent, 'le', expires, 'sta', now)
  redis.call('ZADD', P .. 'leases', expires, tid)
  local data = redis.call('HMGET', key, 'pl', 'pr', 'sub')
  move(sid, 'pending', 'processing')
  leases[#leases + 1] = {tid, attempt, s.ma, s.to, s.fn, s.re, data[1], data[2], data[3]}
end
flush()
return leases
"""

# ARGV: P. Moves the members of each queue of the layout before fair share, P queue:<fn>, into
# the queues of their sessions' owners (function names hold no ':', so no new key is taken
# for an old one). Returns how many moved. Run once by each store, before its first claim.
MIGRATE = r"""
local moved = 0
for _, fn in ipairs(redis.call('SMEMBERS', P .. 'functions')) do
  local old = P .. 'queue:' .. fn
  if redis.call('EXISTS', old) == 1 then
    local members = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
    for i = 1, #members, 2 do
      local sid = session_of(string.sub(members[i], 31))
      redis.call('ZADD', queue_of(sid), members[i + 1], members[i])
      moved = moved + 1
    end
    redis.call('DEL', old)
  end
end
return moved
"""


class RedisShare(MetaShares):
    if TYPE_CHECKING:
        _claim: Script
        _client: Any

        def _run(self, script: Script, *args: Any) -> Any: ...

    def _claim_leases(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None,
    ) -> list[Lease]:
        if not getattr(self, "_queues_moved", False):
            self._run(self._client.register_script(writing(MIGRATE)))
            self._queues_moved = True
        expires = float(now + lease_seconds)
        shares = self._shares().shares(now)
        triples = [
            value
            for owner, share in shares.items()
            for value in (owner, repr(share.share), _quota(share.max_running))
        ]
        rows = self._run(
            self._claim,
            agent_id,
            max_tasks,
            expires,
            float(now),
            len(shares),
            *triples,
            *(functions or ()),
        )
        leases = []
        for tid, attempt, max_attempts, timeout, function, retry, payload, ref, sub in rows:
            session_id, index = split_task_id(tid.decode())
            leases.append(
                Lease(
                    task_id=tid.decode(),
                    session_id=session_id,
                    index=index,
                    attempt=int(attempt),
                    max_attempts=int(max_attempts),
                    timeout_seconds=float(timeout),
                    function=function.decode(),
                    retry_on_error=retry == b"1",
                    expires_at=expires,
                    payload=payload,
                    payload_ref=text_of(ref),
                    submitted_at=float(sub) if sub else None,
                )
            )
        return leases


def _quota(max_running: int | None) -> str:
    return "" if max_running is None else str(max_running)
