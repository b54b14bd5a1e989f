"""Login rate limiting and the report quota in Redis, shared by every replica of the web app.

Two counters per login attempt: one for the user name (or badge), one for the client's
address (``web.auth.client_address``: behind the proven gateway, the address the gateway
saw, so users behind one ingress do not share a bucket). Each is a fixed window: the
first attempt starts it, later ones count into it.

The count is taken **before** the password is checked, atomically (``INCR`` then
``EXPIRE NX`` in one MULTI): of 30 parallel wrong passwords against a limit of 5, five
are checked and 25 are refused, where a check-then-count limiter would check all 30. A
good login then gives its attempt back: the name's counter is cleared and the address's
decremented, so counters hold failures once attempts are done. A locked name or address
refuses every attempt until its window expires, whether the password is right or not.

Each counter lives on its own key and is changed by its own transaction: the two are
independent facts, and keeping them apart keeps them valid on a Redis Cluster, where
the two keys may live on different nodes.

The report quota (:class:`ReportQuota`) counts the requests one user makes of one kind in
a fixed hour that starts with the first; a Lua script checks and counts in one step, so
two replicas cannot both let the last request through.
"""

from __future__ import annotations

from core import keys
from core.config.web import LoginLimitConfig, ReportLimitConfig
from core.redis import RedisCommands
from web.errors import LoginLocked, RateLimited

QUOTA_WINDOW_S = 3600

#: Count one request if the quota allows it.
#: KEYS[1] the user's counter for the kind; ARGV[1] limit; ARGV[2] window in seconds.
#: Returns {1, ttl} when counted, {0, ttl} when the quota is used up (ttl: seconds left).
TAKE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  return {0, redis.call('TTL', KEYS[1])}
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
return {1, redis.call('TTL', KEYS[1])}
"""

# KEYS[1] an attempt counter. Gives one attempt back; never creates the key (a DECR of a
# missing key would leave -1 without an expiry).
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


class LoginLimiter:
    """Counts login attempts and refuses those over the configured limits."""

    def __init__(self, redis: RedisCommands, cfg: LoginLimitConfig) -> None:
        self._redis = redis
        self._cfg = cfg
        self._give_back = redis.register_script(_GIVE_BACK)

    @staticmethod
    def _keys(who: str, address: str) -> tuple[str, str]:
        # ``who`` is already namespaced by the caller (``user:alice``, ``badge:1001``).
        return keys.login_attempts(who.lower()), keys.login_attempts(f"addr:{address}")

    def _count(self, key: str) -> tuple[int, int]:
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, self._cfg.window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = pipe.execute()
        return int(count), int(ttl)

    def attempt(self, who: str, address: str) -> None:
        """Count one attempt; raise :class:`LoginLocked` when the name or address is over."""
        user_key, addr_key = self._keys(who, address)
        # A refused attempt is given back: the counters then hold failures (plus attempts
        # in flight), and a lock does not outgrow its limit.
        count, ttl = self._count(user_key)
        if count > self._cfg.max_failures_per_user:
            self._give_back(keys=[user_key])
            raise LoginLocked(_locked_message(ttl), retry_after_s=max(1, ttl))
        count, ttl = self._count(addr_key)
        if count > self._cfg.max_failures_per_address:
            self._give_back(keys=[addr_key])
            self._give_back(keys=[user_key])  # the name was not tried this time
            raise LoginLocked(_locked_message(ttl), retry_after_s=max(1, ttl))

    def succeeded(self, who: str, address: str) -> None:
        """A good login: the name starts afresh, the address gets its attempt back."""
        user_key, addr_key = self._keys(who, address)
        self._redis.delete(user_key)
        self._give_back(keys=[addr_key])


def _locked_message(ttl: int) -> str:
    minutes = max(1, (int(ttl) + 59) // 60)
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed logins. Try again in {minutes} {unit}."


class ReportQuota:
    """Report requests per user and kind per hour (``web.reports``)."""

    def __init__(self, redis: RedisCommands, cfg: ReportLimitConfig) -> None:
        self._cfg = cfg
        self._take = redis.register_script(TAKE)

    def take(self, who: str, kind: str) -> None:
        """Count one request of ``kind`` by ``who``; raise :class:`RateLimited` when over."""
        limit = self._cfg.limit(kind)
        counted, ttl = self._take(keys=[keys.report_quota(kind, who)], args=[limit, QUOTA_WINDOW_S])
        if not int(counted):
            wait = max(1, int(ttl))
            minutes = max(1, (wait + 59) // 60)
            unit = "minute" if minutes == 1 else "minutes"
            raise RateLimited(
                f"You asked for {limit} {kind} reports in the last hour, the most one person "
                f"may. Try again in {minutes} {unit}.",
                retry_after_s=wait,
            )
