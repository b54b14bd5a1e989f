"""Login rate limiting and the report quota in Redis, shared by every replica of the web app.

Two counters per failed login: one for the user name (or badge), one for the client
address. Each is a fixed window: the first failure starts it (``EXPIRE ... NX``), later
failures count into it, and at the limit further attempts are refused until it expires,
whether the password is right or not, so guessing stays slow. A successful login clears
the name's counter, not the address's (a shared tablet would otherwise let one good
login reset a guesser next to it).

Each counter is changed by one MULTI (INCR then EXPIRE NX) on its own key: the two
counters are independent facts, and keeping them apart keeps them valid on a Redis
Cluster, where the two keys may live on different nodes.

The report quota (:class:`ReportQuota`) counts the requests one user makes of one kind in
a fixed hour that starts with the first; a Lua script checks and counts in one step, so
two replicas cannot both let the last request through.
"""

from __future__ import annotations

from typing import Any

from core import keys
from core.config.web import LoginLimitConfig, ReportLimitConfig
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


class LoginLimiter:
    """Counts failed logins and refuses attempts over the configured limits."""

    def __init__(self, redis: Any, cfg: LoginLimitConfig) -> None:
        self._redis = redis
        self._cfg = cfg

    @staticmethod
    def _keys(who: str, address: str) -> tuple[str, str]:
        # ``who`` is already namespaced by the caller (``user:alice``, ``badge:1001``).
        return keys.login_attempts(who.lower()), keys.login_attempts(f"addr:{address}")

    def check(self, who: str, address: str) -> None:
        """Raise :class:`LoginLocked` when the name or the address is over its limit."""
        user_key, addr_key = self._keys(who, address)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(user_key)
        pipe.ttl(user_key)
        pipe.get(addr_key)
        pipe.ttl(addr_key)
        user_n, user_ttl, addr_n, addr_ttl = pipe.execute()
        if int(user_n or 0) >= self._cfg.max_failures_per_user:
            raise LoginLocked(_locked_message(user_ttl), retry_after_s=max(1, int(user_ttl)))
        if int(addr_n or 0) >= self._cfg.max_failures_per_address:
            raise LoginLocked(_locked_message(addr_ttl), retry_after_s=max(1, int(addr_ttl)))

    def failed(self, who: str, address: str) -> None:
        """Count one failed attempt against the name and the address."""
        for key in self._keys(who, address):
            pipe = self._redis.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, self._cfg.window_s, nx=True)
            pipe.execute()

    def succeeded(self, who: str) -> None:
        """Forget the name's failures after a good login."""
        self._redis.delete(self._keys(who, "")[0])


def _locked_message(ttl: int) -> str:
    minutes = max(1, (int(ttl) + 59) // 60)
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed logins. Try again in {minutes} {unit}."


class ReportQuota:
    """Report requests per user and kind per hour (``web.reports``)."""

    def __init__(self, redis: Any, cfg: ReportLimitConfig) -> None:
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
