"""Lua scripts of a token lease: a key whose value is its holder's token, with a TTL.

Taking a lease is ``SET key token NX PX ttl`` (or :data:`ACQUIRE_LUA`); renewing and
releasing must check that the caller still holds it, atomically, or a holder whose lease
expired (a paused process) would renew or delete its successor's lease. Used by the rules
engine's partition leases and the runner's scheduler lease; the report mutex (N permits)
has scripts of its own.
"""

from __future__ import annotations

from typing import Final

#: KEYS[1] = lease key. ARGV[1] = holder's token, ARGV[2] = TTL in ms.
#: Extends the lease when ARGV[1] holds it. Returns 1 when renewed, 0 when not the holder.
RENEW_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: KEYS[1] = lease key. ARGV[1] = holder's token, ARGV[2] = TTL in ms.
#: Takes the lease when nobody holds it, or extends it when ARGV[1] already does (a holder
#: whose take of it was cut short by an error: it must not wait out its own lease).
#: Returns 1 when the caller holds the lease now, 0 when another holder does.
ACQUIRE_LUA: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

#: KEYS[1] = lease key. ARGV[1] = holder's token.
#: Deletes the lease when ARGV[1] holds it. Returns 1 when released, 0 when not the holder.
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
