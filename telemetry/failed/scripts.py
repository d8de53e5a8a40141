"""The store's Lua scripts: every change to a kind's keys is one of these, atomic on the broker.

Each kind keeps four keys (``telemetry.failed.store``): ``records`` and
``summary`` (hashes by id), ``by_time`` (a sorted set of ids by ``failed_at``)
and ``stored_bytes`` (the two hashes' total size). The scripts share one helper,
``drop``, so that the four keys always agree.

``KEEP`` is the only script that adds records. It writes the new ones, drains
the old dead-letter list into the set (given a fresh id for each item it may
move), trims records older than the age limit, then trims the oldest until
both caps hold. The newest record is always kept, even when it alone exceeds
the byte cap. Writers call it with a record; pollers call it with none.

``REQUEUE`` pushes one message onto its queue's list and removes its record,
or does nothing if the record is gone: a record is either kept or requeued.
"""

from __future__ import annotations

_DROP = """
local function drop(records, summary, by_time, stored_bytes, id)
  local record = redis.call('HGET', records, id)
  if not record then
    redis.call('ZREM', by_time, id)
    return 0
  end
  local size = string.len(record) + string.len(redis.call('HGET', summary, id) or '')
  redis.call('HDEL', records, id)
  redis.call('HDEL', summary, id)
  redis.call('ZREM', by_time, id)
  redis.call('DECRBY', stored_bytes, size)
  return 1
end
"""

#: KEYS: records, summary, by_time, stored_bytes, legacy list, legacy list's byte counter.
#: ARGV: now, max records, max bytes, age limit (0: none), number of new records n,
#: then n x (id, failed_at, record, summary), then ids for drained legacy items.
#: Returns {size, stored bytes, trimmed by age, trimmed by cap, drained, legacy left}.
KEEP = (
    _DROP
    + """
local records, summary, by_time, stored_bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local legacy, legacy_bytes = KEYS[5], KEYS[6]
local now, max_records, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_age, fresh = tonumber(ARGV[4]), tonumber(ARGV[5])

local function add(id, failed_at, record, brief)
  redis.call('HSET', records, id, record)
  redis.call('HSET', summary, id, brief)
  redis.call('ZADD', by_time, failed_at, id)
  redis.call('INCRBY', stored_bytes, string.len(record) + string.len(brief))
end

local position = 6
for _ = 1, fresh do
  add(ARGV[position], tonumber(ARGV[position + 1]), ARGV[position + 2], ARGV[position + 3])
  position = position + 4
end

local drained = 0
while position <= #ARGV do
  local item = redis.call('RPOP', legacy)
  if not item then break end
  redis.call('DECRBY', legacy_bytes, string.len(item))
  local ok, old = pcall(cjson.decode, item)
  if not ok or type(old) ~= 'table' then old = {} end
  local failed_at = tonumber(old['received_at']) or now
  local brief = {kind = 'dead_letter', failed_at = failed_at}
  for _, name in ipairs({'queue', 'task', 'reason'}) do
    if type(old[name]) == 'string' then brief[name] = old[name] end
  end
  if type(old['id']) == 'string' then brief['task_id'] = old['id'] end
  add(ARGV[position], failed_at, item, cjson.encode(brief))
  position = position + 1
  drained = drained + 1
end
local legacy_left = redis.call('LLEN', legacy)
if legacy_left == 0 then redis.call('DEL', legacy_bytes) end

local aged = 0
if max_age > 0 then
  local old_ids = redis.call('ZRANGEBYSCORE', by_time, '-inf', '(' .. (now - max_age), 'LIMIT', 0, 10000)
  for _, id in ipairs(old_ids) do
    aged = aged + drop(records, summary, by_time, stored_bytes, id)
  end
end

local size = redis.call('ZCARD', by_time)
local total = tonumber(redis.call('GET', stored_bytes) or '0')
local capped = 0
while size > 1 and (size > max_records or total > max_bytes) do
  local oldest = redis.call('ZRANGE', by_time, 0, 0)[1]
  capped = capped + drop(records, summary, by_time, stored_bytes, oldest)
  size = redis.call('ZCARD', by_time)
  total = tonumber(redis.call('GET', stored_bytes) or '0')
end
if size == 0 then redis.call('DEL', stored_bytes) end
return {size, total, aged, capped, drained, legacy_left}
"""
)

#: KEYS: records, summary, by_time, stored_bytes. ARGV: ids. Returns how many were removed.
DELETE = (
    _DROP
    + """
local removed = 0
for _, id in ipairs(ARGV) do
  removed = removed + drop(KEYS[1], KEYS[2], KEYS[3], KEYS[4], id)
end
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('DEL', KEYS[4]) end
return removed
"""
)

#: KEYS: records, summary, by_time, stored_bytes, the queue's list (prefix and priority
#: sub-list included). ARGV: id, message. Returns 1 once pushed and removed, 0 if the
#: record is gone.
REQUEUE = (
    _DROP
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[5], ARGV[2])
drop(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1])
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('DEL', KEYS[4]) end
return 1
"""
)

#: KEYS: by_time, summary. ARGV: max score, min score (ZREVRANGEBYSCORE bounds), offset, count.
#: Returns one JSON array of [id, summary] pairs, newest first: a single bulk reply for
#: the client to parse in one call, whatever the number of records.
SUMMARIES = """
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
local parts = {}
for _, id in ipairs(ids) do
  local brief = redis.call('HGET', KEYS[2], id)
  if brief then parts[#parts + 1] = '["' .. id .. '",' .. brief .. ']' end
end
return '[' .. table.concat(parts, ',') .. ']'
"""
