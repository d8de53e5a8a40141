"""The capped dead-letter list on the broker.

Newest records are at the head (LPUSH), so ``LRANGE key 0 9`` shows the latest
ten. A companion key ``<key>:bytes`` tracks the list's total size so that the
byte cap is enforced atomically in one Lua call with the push.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from telemetry.deadletters.records import DeadLetter

logger = logging.getLogger("telemetry.deadletters")

# Push, then trim the oldest records until both caps hold; the newest record is
# always kept, even when it alone exceeds the byte cap.
_PUSH_AND_TRIM = """
local key, bytes_key = KEYS[1], KEYS[2]
local max_records, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = redis.call('LPUSH', key, ARGV[1])
local total
if n == 1 then
  total = string.len(ARGV[1])
  redis.call('SET', bytes_key, total)
else
  total = redis.call('INCRBY', bytes_key, string.len(ARGV[1]))
end
local trimmed = 0
while n > 1 and (n > max_records or total > max_bytes) do
  local oldest = redis.call('RPOP', key)
  total = redis.call('DECRBY', bytes_key, string.len(oldest))
  n = n - 1
  trimmed = trimmed + 1
end
return {trimmed, n, total}
"""

_REMOVE = """
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if removed > 0 then
  redis.call('DECRBY', KEYS[2], string.len(ARGV[1]))
end
return removed
"""


@dataclass(frozen=True)
class PushResult:
    trimmed: int
    size: int
    total_bytes: int


class DeadLetterStore:
    """The list at ``key`` on ``client``, capped at ``max_records`` and ``max_bytes``."""

    def __init__(self, client: redis.Redis, key: str, max_records: int, max_bytes: int) -> None:
        self.client = client
        self.key = key
        self.bytes_key = f"{key}:bytes"
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._push: Any = client.register_script(_PUSH_AND_TRIM)
        self._remove: Any = client.register_script(_REMOVE)

    def push(self, record: DeadLetter) -> PushResult:
        trimmed, size, total = self._push(
            keys=[self.key, self.bytes_key],
            args=[record.to_json(), self.max_records, self.max_bytes],
        )
        if trimmed:
            logger.warning(
                "dead-letter list at its cap (%d records, %d bytes): trimmed %d oldest record(s)",
                self.max_records,
                self.max_bytes,
                trimmed,
            )
        return PushResult(int(trimmed), int(size), int(total))

    def size(self) -> int:
        return int(self.client.llen(self.key))

    def records(self, start: int = 0, count: int = 20) -> list[tuple[int, DeadLetter]]:
        """Records from index ``start`` (0 is the newest), with their index."""
        items = self.client.lrange(self.key, start, start + count - 1)
        return [(start + i, DeadLetter.from_json(item)) for i, item in enumerate(items)]

    def raw_at(self, index: int) -> bytes | None:
        item = self.client.lindex(self.key, index)
        return item.encode() if isinstance(item, str) else item

    def remove(self, stored: bytes) -> bool:
        """Remove one record, given exactly as stored; False if it is gone already."""
        return int(self._remove(keys=[self.key, self.bytes_key], args=[stored])) > 0

    def purge(self) -> int:
        count = self.size()
        self.client.delete(self.key, self.bytes_key)
        return count
