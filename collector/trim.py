"""Trimming the signal streams without ever losing what the rules engine still needs.

With the ``rules`` consumer group (or the signal history's, ``history``) present, a
partition stream is trimmed (``MINID ~``) below the oldest entry any of them has not
acknowledged: a group's oldest pending entry, or its first undelivered one when nothing
is pending. Within that bound ``retention_s`` of acknowledged history is kept, unless
the stream is over ``streams.max_len``, when all of it may go. Without either group (no
rules engine or history has run yet) the stream is capped at ``MAXLEN ~ max_len``. The
decision and the trim are one Lua script, so a reader in between cannot make it trim an
entry it just received.

A stalled rules engine (or history writer) therefore makes the streams grow: the
``repsys_collector_stream_entries`` gauge is what the lag alert watches. Approximate
trimming removes whole stream nodes only, so a stream may keep a few hundred entries more
than the bound; it never keeps fewer.
"""

from __future__ import annotations

import time

from collector.batch import send_batch
from collector.metrics import CollectorMetrics
from core import keys
from core.redis import RedisCommands

#: Trim one partition stream without ever removing entries a group still needs.
#: KEYS[1] = the partition stream. ARGV[1] = the guarded consumer groups, space-separated
#: (rules, history), ARGV[2] = max_len, ARGV[3] = retention bound as a stream id
#: ("<ms>-0"). Returns entries removed.
TRIM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local guarded = {}
for name in string.gmatch(ARGV[1], '%S+') do guarded[name] = true end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  return am < bm or (am == bm and as < bs)
end
-- The bound is the lowest of each guarded group's own: its oldest pending entry, or the
-- first undelivered one when nothing is pending (all up to last-delivered-id is acked).
local safe = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if guarded[info['name']] then
    local bound
    if tonumber(info['pending']) > 0 then
      bound = redis.call('XPENDING', KEYS[1], info['name'])[2]
    else
      local ms, seq = string.match(info['last-delivered-id'], '^(%d+)-(%d+)$')
      bound = ms .. '-' .. tostring(tonumber(seq) + 1)
    end
    if safe == nil or before(bound, safe) then safe = bound end
  end
end
if not safe then
  return redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])
end
local bound = safe
if redis.call('XLEN', KEYS[1]) <= tonumber(ARGV[2]) and before(ARGV[3], safe) then
  bound = ARGV[3]
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', bound)
"""


#: The consumer groups whose unacknowledged entries trimming never removes.
GUARDED = f"{keys.RULES_GROUP} {keys.HISTORY_GROUP}"


class Trimmer:
    """Trims every partition stream: all of them in one round trip.

    The sink runs it on a thread of its own (:class:`collector.sink.StreamSink`), not
    between write batches: one script call and one ``XLEN`` per partition, each a round
    trip, held the writes for about 100 ms on a busy machine every ``trim_interval_s``,
    the end-to-end latency's p99 (docs/decisions/0451-collector-trim-off-the-write-path.md).
    """

    def __init__(
        self, client: RedisCommands, metrics: CollectorMetrics, *, partitions: int, max_len: int
    ) -> None:
        self._redis = client
        self.metrics = metrics
        self.partitions = partitions
        self.max_len = max_len

    def trim(self, retention_s: float) -> int:
        """Trim each partition once; the number of entries removed."""
        bound = f"{int((time.time() - retention_s) * 1000)}-0"
        streams = [keys.signal_stream(p) for p in range(self.partitions)]
        commands: list[tuple[str | bytes, ...]] = []
        for stream in streams:
            # EVAL, not EVALSHA: nothing to reload after a restart or a failover, and
            # Redis finds the compiled script by its hash (the batches' XADD_SCRIPT too).
            commands.append(("EVAL", TRIM_SCRIPT, "1", stream, GUARDED, str(self.max_len), bound))
            commands.append(("XLEN", stream))
        replies = send_batch(self._redis, commands)
        removed = 0
        for p in range(self.partitions):
            removed += int(replies[2 * p])
            self.metrics.stream_length.labels(str(p)).set(int(replies[2 * p + 1]))
        if removed:
            self.metrics.trimmed.inc(removed)
        return removed
