"""The Redis task store's ``retry``: one Lua script (run after ``redis_scripts.PRELUDE``).

ARGV: P, sid, every ("1": every failed task; "0": those of the indexes that follow, sorted).
Returns nil for an unknown session, else the indexes of the tasks sent back, in order. A task
sent back takes its original queue member again (the session's block and its position), so
it runs before younger tasks of its priority, as in the SQL stores.
"""

from __future__ import annotations

RETRY = r"""
local sid = ARGV[2]
local skey = session_key(sid)
local s = redis.call('HMGET', skey, 'tc', 'ix')
if not s[1] then return false end
local tc = tonumber(s[1])
local indexes = {}
if ARGV[3] == '1' then
  for i = 0, tc - 1 do indexes[#indexes + 1] = i end
else
  for i = 4, #ARGV do indexes[#indexes + 1] = tonumber(ARGV[i]) end
end
local block = string.sub(s[2], 1, 20)
local fn = session(sid).fn
local sent = {}
for _, i in ipairs(indexes) do
  local tid = sid .. '_' .. i
  local key = task_key(tid)
  if i < tc and redis.call('HGET', key, 'st') == 'failed' then
    local place = block .. pad(tostring(i + 1), 10)
    redis.call('HDEL', key, 'out', 'oref', 'err', 'xa', 'log', 'ds', 'fin', 'sta', 'ow', 'le')
    redis.call('HSET', key, 'st', 'pending', 'at', 0, 'q', place)
    redis.call('ZREM', P .. 'done:' .. sid, tid)
    redis.call('ZREM', P .. 'failed:' .. sid, tid)
    enqueue(tid, key, sid)
    move(sid, 'failed', 'pending')
    sent[#sent + 1] = i
  end
end
if #sent > 0 then
  redis.call('HINCRBY', skey, 'rt', #sent)
  woken[fn] = true
  session(sid).progressed = true
end
flush()
return sent
"""
