"""Trimming the signal streams without ever losing what the rules engine still needs.

With the ``rules`` consumer group present, a partition stream is trimmed (``MINID ~``)
below the oldest entry the group has not acknowledged: the oldest pending entry, or the
first undelivered one when nothing is pending. Within that bound ``retention_s`` of
acknowledged history is kept, unless the stream is over ``streams.max_len``, when all of
it may go. Without the group (no rules engine has run yet) the stream is capped at
``MAXLEN ~ max_len``. The decision and the trim are one Lua script, so a rules worker
reading in between cannot make it trim an entry it just received.

A stalled rules engine therefore makes the streams grow: the
``repsys_collector_stream_entries`` gauge is what the lag alert watches. Approximate
trimming removes whole stream nodes only, so a stream may keep a few hundred entries more
than the bound; it never keeps fewer.
"""

from __future__ import annotations

import time
from typing import Any

from collector.metrics import CollectorMetrics
from core import keys

#: Trim one partition stream without ever removing entries the group still needs.
#: KEYS[1] = the partition stream. ARGV[1] = consumer group (rules), ARGV[2] = max_len,
#: ARGV[3] = retention bound as a stream id ("<ms>-0"). Returns entries removed.
TRIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local group = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == ARGV[1] then group = info end
end
if not group then
  return redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])
end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local safe
if tonumber(group['pending']) > 0 then
  safe = redis.call('XPENDING', KEYS[1], ARGV[1])[2]
else
  -- Everything up to last-delivered-id is acknowledged: the next id is the bound.
  local ms, seq = string.match(group['last-delivered-id'], '^(%d+)-(%d+)$')
  safe = ms .. '-' .. tostring(tonumber(seq) + 1)
end
local bound = safe
if redis.call('XLEN', KEYS[1]) <= tonumber(ARGV[2]) then
  local sm, ss = split(safe)
  local rm, rs = split(ARGV[3])
  if rm < sm or (rm == sm and rs < ss) then bound = ARGV[3] end
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', bound)
"""


class Trimmer:
    """Trims every partition stream (called by the sink's writer between batches)."""

    def __init__(
        self, client: Any, metrics: CollectorMetrics, *, partitions: int, max_len: int
    ) -> None:
        self._redis = client
        self._script = client.register_script(TRIM_SCRIPT)
        self.metrics = metrics
        self.partitions = partitions
        self.max_len = max_len

    def trim(self, retention_s: float) -> int:
        """Trim each partition once; the number of entries removed."""
        bound = f"{int((time.time() - retention_s) * 1000)}-0"
        removed = 0
        for p in range(self.partitions):
            stream = keys.signal_stream(p)
            removed += int(
                self._script(keys=[stream], args=[keys.RULES_GROUP, self.max_len, bound])
            )
            self.metrics.stream_length.labels(str(p)).set(self._redis.xlen(stream))
        if removed:
            self.metrics.trimmed.inc(removed)
        return removed
