"""The Lua scripts of reliable fetch (``telemetry.transport.fetch`` says what each one
is for), and how they run: by SHA, loaded again when the server forgot them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True)
class LuaScript:
    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.text.encode()).hexdigest()


#: Moves what is in list ARGV[1] back to the queue key recorded for id ARGV[2].
_RESTORE = """
local function restore(list, id)
  local source = redis.call('HGET', KEYS[1], id)
  local moved = 0
  if source then
    while redis.call('LMOVE', list, source, 'RIGHT', 'RIGHT') do
      moved = moved + 1
    end
  end
  return moved
end
local function server_time()
  local now = redis.call('TIME')
  return tonumber(now[1]) + tonumber(now[2]) / 1000000
end
"""

#: KEYS: the sources hash, the deadlines, the parked set, the id's list, then the queue keys.
#: ARGV: the id, its deadline in seconds, the key it blocks on if every key is empty.
#: Returns {source key, item}, or false.
FETCH = LuaScript(
    """#!lua flags=allow-oom
local now = redis.call('TIME')
local deadline = tonumber(now[1]) + tonumber(now[2]) / 1000000 + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local held = redis.call('LINDEX', KEYS[4], -1)
if held then
  return {redis.call('HGET', KEYS[1], ARGV[1]) or '', held}
end
for i = 5, #KEYS do
  if redis.call('LLEN', KEYS[i]) > 0 then
    redis.call('HSET', KEYS[1], ARGV[1], KEYS[i])
    return {KEYS[i], redis.call('LMOVE', KEYS[i], KEYS[4], 'RIGHT', 'LEFT')}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return false
"""
)

#: KEYS: the id's list, kombu's unacked hash and index.
#: ARGV: the delivery tag ('' when the consumer acknowledges nothing), the rest of
#: kombu's unacked record after the item (``,"exchange","routing key"]``), the time.
#: Returns 1 when the item is recorded (or was, by an earlier try), 0 when it is gone.
RECORD = LuaScript(
    """#!lua flags=allow-oom
local item = redis.call('LINDEX', KEYS[1], -1)
if not item then
  if ARGV[1] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
    return 1
  end
  return 0
end
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], '[' .. item .. ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
redis.call('RPOP', KEYS[1])
return 1
"""
)

#: KEYS: kombu's unacked hash and index. ARGV: the delivery tag. kombu's ack, as one
#: script: Redis 7 refuses its MULTI under maxmemory, and a full broker must drain.
ACK = LuaScript(
    """#!lua flags=allow-oom
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
)

#: KEYS: the sources hash, the deadlines, the parked set.
#: ARGV: the lists' key prefix, the most ids to look at, the id of a live channel
#: whose deadline moves on ('' for none), its deadline in seconds, the parked time.
#: Returns how many items went back to their queues.
SWEEP = LuaScript(
    "#!lua flags=allow-oom\n"
    + _RESTORE
    + """
local now = server_time()
local limit = tonumber(ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
end
local moved = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  moved = moved + restore(ARGV[1] .. id, id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, limit)) do
  local list = ARGV[1] .. id
  moved = moved + restore(list, id)
  if redis.call('LLEN', list) == 0 then
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[3], id)
  else
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), id)
  end
end
return moved
"""
)

#: KEYS: the sources hash, the deadlines, the parked set. ARGV: the id's list, the id,
#: the parked time. Returns how many items went back to their queues.
GIVE_BACK = LuaScript(
    "#!lua flags=allow-oom\n"
    + _RESTORE
    + """
local moved = restore(ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], server_time() + tonumber(ARGV[3]), ARGV[2])
return moved
"""
)


def run(client: redis.Redis, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """EVALSHA, or EVAL (which caches it) when the server does not know the script,
    as after a restart or a failover."""
    try:
        return client.evalsha(script.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(script.text, len(keys), *keys, *args)
