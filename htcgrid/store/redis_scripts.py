"""The Lua scripts of the Redis task store: every compare-and-set of design §2 is one script.

Each script is ``SHEBANG + PRELUDE + body`` and takes the key prefix as ``ARGV[1]``. The
``#!lua`` shebang (Redis ≥ 7.0) makes Redis refuse a writing script *before* it starts when
the server is out of memory, so a script never stops half-way through its writes.

Lua numbers are doubles. Scripts therefore never do arithmetic on times or on the FIFO
counter: times arrive as exact decimal strings from Python and are stored as given, and the
counter is read back with GET as its decimal string (see ``next_block``).

Task hash fields (short because every task carries them):

    st   state                       at   attempt              pri  priority
    ow   owner (agent id)            le   lease expires at     sub  submitted at
    sta  started at (last claim)     fin  finished at          ds   cursor
    pl   payload                     pr   payload ref          q    queue position
    out  output                      oref output ref           err  error (JSON)
    log  captured log                xa   "1": failed because the lease expired
    hd   "1": held (pending, in no queue until released; ``redis_held``)
    ca   "1": answered from the cache (memoization) without running
    ev   poison evidence (JSON list of the attempts that killed their worker)

Session hash fields: ``hash owner fn pri ma to re tc at ix done cx`` (content hash, owner,
function, priority, max attempts, timeout, retry on error, task count, created at, index
member, completion count, cancelled), its own settings ``rs pa cs`` (retention, poison after,
cache seconds; absent: none) and ``n:<state>``, the number of tasks in each state.
"""

from __future__ import annotations

SHEBANG = "#!lua\n"
READ_ONLY_SHEBANG = "#!lua flags=no-writes\n"

PRELUDE = r"""
local P = ARGV[1]
local function task_key(tid) return P .. 'task:' .. tid end
local function session_key(sid) return P .. 'session:' .. sid end
-- One queue per function and owner (fair share, ``redis_share``); P owners:<fn> is the set of
-- owners that may have a queue of that function.
local function queue_key(fn, owner) return P .. 'queue:' .. fn .. ':' .. owner end
local function session_of(tid) return string.match(tid, '^(.*)_%d+$') end
local function pad(s, width) return string.rep('0', width - #s) .. s end
-- Queue scores are 0 - priority, so ZPOPMIN takes the highest priority first.
local function score(priority) return 0 - tonumber(priority) end

local sessions = {}
local function session(sid)
  local s = sessions[sid]
  if not s then
    local f = redis.call('HMGET', session_key(sid), 'fn', 'ma', 'to', 're', 'owner')
    s = {fn = f[1], ma = tonumber(f[2]), to = f[3], re = f[4], owner = f[5], counts = {},
      progressed = false, running = 0}
    sessions[sid] = s
  end
  return s
end

-- The queue of a session's pending tasks: its function's, of its owner.
local function queue_of(sid)
  local s = session(sid)
  if not s.queue then
    s.queue = queue_key(s.fn, s.owner)
    redis.call('SADD', P .. 'owners:' .. s.fn, s.owner)
  end
  return s.queue
end

-- P running: owner -> its tasks now processing, which fair share weighs (no field: none).
local function running_add(owner, n)
  if redis.call('HINCRBY', P .. 'running', owner, n) <= 0 then
    redis.call('HDEL', P .. 'running', owner)
  end
end

-- Also keeps P running.
local function move(sid, from, to)
  local s = session(sid)
  local c = s.counts
  c[from] = (c[from] or 0) - 1
  c[to] = (c[to] or 0) + 1
  if from == 'processing' then s.running = s.running - 1 end
  if to == 'processing' then s.running = s.running + 1 end
end

local woken = {}
-- Put a pending task in its queue at its member ``q`` (its original place), the one way
-- every script (requeue, retry, release of a held task) makes a task claimable.
local function enqueue(tid, key, sid)
  local t = redis.call('HMGET', key, 'pri', 'q')
  local fn = session(sid).fn
  redis.call('ZADD', queue_of(sid), score(t[1]), t[2] .. tid)
  woken[fn] = true
end
-- Take a pending task out of its queue (a held task is in none: nothing to take).
local function dequeue(tid, key, sid)
  local q = redis.call('HGET', key, 'q')
  if q then redis.call('ZREM', queue_of(sid), q .. tid) end
end

local function requeue(tid, key, sid)
  -- The task keeps its original queue member, so a retry runs before younger tasks of
  -- its priority (as in the SQL stores, where it keeps its row number).
  enqueue(tid, key, sid)
  redis.call('HSET', key, 'st', 'pending')
  redis.call('HDEL', key, 'ow', 'le')
  move(sid, 'processing', 'pending')
end

local function finish(tid, key, sid, from, state, now)
  local done = redis.call('HINCRBY', session_key(sid), 'done', 1)
  redis.call('HSET', key, 'st', state, 'fin', now, 'ds', done)
  redis.call('HDEL', key, 'ow', 'le', 'q', 'hd')
  redis.call('ZADD', P .. 'done:' .. sid, done, tid)
  if state == 'failed' then
    redis.call('ZADD', P .. 'failed:' .. sid, string.match(tid, '_(%d+)$'), tid)
  end
  move(sid, from, state)
  session(sid).progressed = true
end

-- Write the per-state counters once per session, then wake whoever waits on what changed.
local function flush()
  for sid, s in pairs(sessions) do
    for state, n in pairs(s.counts) do
      if n ~= 0 then redis.call('HINCRBY', session_key(sid), 'n:' .. state, n) end
    end
    if s.progressed then redis.call('PUBLISH', P .. 'progress:' .. sid, 1) end
    if s.running ~= 0 then running_add(s.owner, s.running) end
  end
  local any = false
  for fn in pairs(woken) do
    redis.call('PUBLISH', P .. 'wake:' .. fn, 1)
    any = true
  end
  if any then redis.call('PUBLISH', P .. 'wake', 1) end
end
"""

# ARGV: P, sid, content_hash, owner, function, priority, max_attempts, timeout_seconds,
#       retry_on_error, task_count, created_at, now, k, then k pairs (field, value) of the
#       session's own settings, then per task: index, priority, flags, payload, payload_ref
#       (flags holds 'p' and/or 'r' for the fields that are present, 'h' for a held task:
#       pending, marked ``hd``, and in no queue until ``redis_held.RELEASE``).
# Returns 1 created, 0 same content already there, -1 conflict.
CREATE = r"""
local sid, hash = ARGV[2], ARGV[3]
local skey = session_key(sid)
local existing = redis.call('HGET', skey, 'hash')
if existing then
  if existing == hash then return 0 end
  return -1
end
local owner, fn, tc, created, now = ARGV[4], ARGV[5], ARGV[10], ARGV[11], ARGV[12]
-- The counter is read back as its decimal string: exact at any count, where a Lua number
-- (a double) would round above 2^53. Zero-padded, it orders members by submission.
redis.call('INCR', P .. 'seq')
local block = pad(redis.call('GET', P .. 'seq'), 20)
redis.call('HSET', skey, 'hash', hash, 'owner', owner, 'fn', fn, 'pri', ARGV[6],
  'ma', ARGV[7], 'to', ARGV[8], 're', ARGV[9], 'tc', tc, 'at', created, 'ix', block .. sid,
  'done', 0, 'cx', 0, 'n:pending', tc)
local own = tonumber(ARGV[13])
for j = 14, 13 + 2 * own, 2 do redis.call('HSET', skey, ARGV[j], ARGV[j + 1]) end
redis.call('ZADD', P .. 'sessions', created, block .. sid)
redis.call('ZADD', P .. 'owner:' .. owner, created, block .. sid)
redis.call('SADD', P .. 'functions', fn)
local queue = queue_of(sid)
local batch = {}
local position = 0
for i = 14 + 2 * own, #ARGV, 5 do
  position = position + 1
  local tid = sid .. '_' .. ARGV[i]
  -- Only the 30 ordering digits go into the hash: with the task id they would pass the
  -- 64 bytes up to which Redis keeps a small hash in its compact listpack encoding.
  local place = block .. pad(tostring(position), 10)
  local flags = ARGV[i + 2]
  local fields = {'st', 'pending', 'at', 0, 'pri', ARGV[i + 1], 'sub', now, 'q', place}
  if string.find(flags, 'p', 1, true) then
    fields[#fields + 1] = 'pl'
    fields[#fields + 1] = ARGV[i + 3]
  end
  if string.find(flags, 'r', 1, true) then
    fields[#fields + 1] = 'pr'
    fields[#fields + 1] = ARGV[i + 4]
  end
  local held = string.find(flags, 'h', 1, true)
  if held then
    fields[#fields + 1] = 'hd'
    fields[#fields + 1] = 1
  end
  redis.call('HSET', task_key(tid), unpack(fields))
  if not held then
    batch[#batch + 1] = score(ARGV[i + 1])
    batch[#batch + 1] = place .. tid
  end
  -- unpack() is bounded by the Lua C stack: add members in slices.
  if #batch >= 1000 then
    redis.call('ZADD', queue, unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('ZADD', queue, unpack(batch)) end
woken[fn] = true
flush()
return 1
"""

# ARGV: P, agent, expires_at, then (tid, attempt) pairs. Returns a HeartbeatStatus per pair.
HEARTBEAT = r"""
local agent, expires = ARGV[2], ARGV[3]
local answers = {}
for i = 4, #ARGV, 2 do
  local tid = ARGV[i]
  local key = task_key(tid)
  local t = redis.call('HMGET', key, 'st', 'ow', 'at')
  if t[1] == 'processing' and t[2] == agent and t[3] == ARGV[i + 1] then
    redis.call('HSET', key, 'le', expires)
    redis.call('ZADD', P .. 'leases', expires, tid)
    answers[#answers + 1] = 'ok'
  elseif t[1] == 'cancelled' then
    answers[#answers + 1] = 'cancelled'
  else
    answers[#answers + 1] = 'lost'
  end
end
return answers
"""

# ARGV: P, agent, now, then per outcome: tid, attempt, state, flags, output, output_ref,
#       error, log, evidence (flags holds 'o', 'r', 'e' for the fields that are present, 'c'
#       for an answer from the cache;
#       an empty evidence keeps the task's).
# Returns 1 (applied) or 0 (refused) per outcome.
COMPLETE = r"""
local agent, now = ARGV[2], ARGV[3]
local applied = {}
for i = 4, #ARGV, 9 do
  local tid, state, flags, log = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 7]
  local key = task_key(tid)
  local t = redis.call('HMGET', key, 'st', 'ow', 'at')
  if t[1] == 'processing' and t[2] == agent and t[3] == ARGV[i + 1] then
    local sid = session_of(tid)
    redis.call('ZREM', P .. 'leases', tid)
    if log == '' then redis.call('HDEL', key, 'log') else redis.call('HSET', key, 'log', log) end
    if ARGV[i + 8] ~= '' then redis.call('HSET', key, 'ev', ARGV[i + 8]) end
    if state == 'pending' then
      if string.find(flags, 'x', 1, true) then redis.call('HINCRBY', key, 'at', -1) end
      requeue(tid, key, sid)
    else
      local fields = {}
      for j, spec in ipairs({{'o', 'out'}, {'r', 'oref'}, {'e', 'err'}}) do
        if string.find(flags, spec[1], 1, true) then
          fields[#fields + 1] = spec[2]
          fields[#fields + 1] = ARGV[i + 3 + j]
        end
      end
      if string.find(flags, 'c', 1, true) then fields[#fields + 1] = 'ca'; fields[#fields + 1] = 1 end
      if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
      finish(tid, key, sid, 'processing', state, now)
    end
    applied[#applied + 1] = 1
  else
    applied[#applied + 1] = 0
  end
end
flush()
return applied
"""

# ARGV: P, now, limit. Returns {requeued task ids, failed task ids}.
EXPIRE = r"""
local now = ARGV[2]
local tids = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now, 'LIMIT', 0, ARGV[3])
local requeued, failed = {}, {}
for _, tid in ipairs(tids) do
  redis.call('ZREM', P .. 'leases', tid)
  local key = task_key(tid)
  local t = redis.call('HMGET', key, 'st', 'at')
  if t[1] == 'processing' then
    local sid = session_of(tid)
    if tonumber(t[2]) < session(sid).ma then
      requeue(tid, key, sid)
      requeued[#requeued + 1] = tid
    else
      -- The reason text is rendered by htcgrid.models when the task is read.
      redis.call('HSET', key, 'xa', 1)
      finish(tid, key, sid, 'processing', 'failed', now)
      failed[#failed + 1] = tid
    end
  end
end
flush()
return {requeued, failed}
"""

# ARGV: P, sid. Returns 1 if the session existed, else 0.
DELETE = r"""
local sid = ARGV[2]
local skey = session_key(sid)
local s = redis.call('HMGET', skey, 'tc', 'fn', 'owner', 'ix')
if not s[1] then return 0 end
local running = 0
for i = 0, tonumber(s[1]) - 1 do
  local tid = sid .. '_' .. i
  local key = task_key(tid)
  local t = redis.call('HMGET', key, 'st', 'q')
  if t[1] == 'pending' then
    redis.call('ZREM', queue_of(sid), t[2] .. tid)
  elseif t[1] == 'processing' then
    redis.call('ZREM', P .. 'leases', tid)
    running = running + 1
  end
  redis.call('UNLINK', key)
end
redis.call('UNLINK', skey, P .. 'done:' .. sid, P .. 'failed:' .. sid)
redis.call('ZREM', P .. 'sessions', s[4])
redis.call('ZREM', P .. 'owner:' .. s[3], s[4])
if running > 0 then running_add(s[3], -running) end
redis.call('PUBLISH', P .. 'progress:' .. sid, 1)
return 1
"""

# ARGV: P, function... (none: every function). Returns the number of pending tasks.
DEPTH = r"""
local functions = {}
for i = 2, #ARGV do functions[#functions + 1] = ARGV[i] end
if #functions == 0 then functions = redis.call('SMEMBERS', P .. 'functions') end
local n = 0
for _, fn in ipairs(functions) do
  for _, owner in ipairs(redis.call('SMEMBERS', P .. 'owners:' .. fn)) do
    n = n + redis.call('ZCARD', queue_key(fn, owner))
  end
end
return n
"""

# ARGV: P, sid, cursor, limit, field... Returns {max_attempts, {{tid, {values}}...}}.
RESULTS = r"""
local sid = ARGV[2]
local tids = redis.call('ZRANGEBYSCORE', P .. 'done:' .. sid, '(' .. ARGV[3], '+inf',
  'LIMIT', 0, ARGV[4])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local rows = {}
for _, tid in ipairs(tids) do
  rows[#rows + 1] = {tid, redis.call('HMGET', task_key(tid), unpack(fields))}
end
return {redis.call('HGET', session_key(sid), 'ma'), rows}
"""


def writing(body: str) -> str:
    return SHEBANG + PRELUDE + body


def reading(body: str) -> str:
    return READ_ONLY_SHEBANG + PRELUDE + body
