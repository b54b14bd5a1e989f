"""Every Redis key, stream, group and channel name RepSys uses, in one place.

All keys start with ``repsys:``. Keys that must live on one Redis Cluster node together
carry the same hash tag in braces: a signal partition's stream, its lease and its rule
state share ``{<p>}``; a report kind's mutex and fence share ``{<kind>}``. Nothing outside
``core`` writes a key name by hand.
"""

from __future__ import annotations

import zlib
from typing import Final

PREFIX: Final = "repsys:"

# --- signals (collector writes, rules reads) ------------------------------------------

#: Consumer group of the rules workers on every signal stream.
RULES_GROUP: Final = "rules"
#: The signal history's consumer group (``repsys history``); trimming guards it too.
HISTORY_GROUP: Final = "history"


def history_consumer_lease(consumer: str) -> str:
    """Lease on a history consumer name: the one ``repsys history`` using it (token, TTL)."""
    return f"{PREFIX}history:lease:{consumer}"


def signal_stream(partition: int) -> str:
    """The stream of one partition of signals: ``repsys:signals:{<p>}``."""
    return f"{PREFIX}signals:{{{partition}}}"


def partition_of(machine_id: str, partitions: int) -> int:
    """The partition a machine's signals always go to (stable across processes and restarts)."""
    return zlib.crc32(machine_id.encode("utf-8")) % partitions


#: Entries the collector could not decode (payload, reason, topic or node).
COLLECTOR_DEAD_LETTERS: Final = f"{PREFIX}deadletter:collector"
#: Stream entries the rules engine could not decode.
RULES_DEAD_LETTERS: Final = f"{PREFIX}deadletter:rules"

# --- collector ------------------------------------------------------------------------


def collector_heartbeat(name: str) -> str:
    """A collector process's liveness and counters (hash, with a TTL).

    ``name`` is ``<collector>:<host>:<pid>:<random>``: one per process, replicas too.
    """
    return f"{PREFIX}collector:heartbeat:{name}"


def collector_source_lease(collector: str, source: str) -> str:
    """Lease on one source of a collector config: the one process reading it (token, TTL)."""
    return f"{PREFIX}collector:lease:{collector}:{source}"


def collector_source_state(collector: str, source: str) -> str:
    """A source's reader state that must outlive the process (hash, no TTL).

    The MTConnect reader keeps its agent's ``instance`` and ``next`` sequence there; the
    UDP reader its tool-life runs (field ``run:<workcenter>:<tool var>``).
    """
    return f"{PREFIX}collector:state:{collector}:{source}"


def machine_last_seen() -> str:
    """Hash machine id -> last receive timestamp, for boards and the no-data rule."""
    return f"{PREFIX}collector:last_seen"


# --- rules ----------------------------------------------------------------------------


def rules_lease(partition: int) -> str:
    """Lease on one partition, value = worker id, with a TTL."""
    return f"{PREFIX}rules:lease:{{{partition}}}"


def rules_state(partition: int) -> str:
    """Checkpointed rule state of one partition (hash machine -> state blob)."""
    return f"{PREFIX}rules:state:{{{partition}}}"


#: Sorted set of live rules workers (member = worker id, score = last heartbeat).
RULES_WORKERS: Final = f"{PREFIX}rules:workers"


def machine_live(machine_id: str) -> str:
    """Latest known state and signals of a machine (hash), for the boards."""
    return f"{PREFIX}machine:{machine_id}:live"


#: Sorted set of upcoming tool changes (member = machine|tool, score = minutes remaining,
#: negative when overdue).
UPCOMING_TOOL_CHANGES: Final = f"{PREFIX}rules:upcoming_tool_changes"
#: Hash: member of ``UPCOMING_TOOL_CHANGES`` -> Unix time its minutes were computed at.
UPCOMING_TOOL_CHANGES_AT: Final = f"{PREFIX}rules:upcoming_tool_changes_at"

# --- plex -----------------------------------------------------------------------------

# Both keys carry the hash tag {plex}: the rate-limit script reads and writes them together,
# so on a Redis Cluster they must live on one node.

#: Shared rate limit of Plex calls across every sender (GCRA theoretical arrival time, ms).
PLEX_RATE_LIMIT: Final = f"{PREFIX}{{plex}}:ratelimit"
#: Set while Plex asked us to back off (HTTP 429 Retry-After); value = until when.
PLEX_BACKOFF_UNTIL: Final = f"{PREFIX}{{plex}}:backoff_until"

# --- reports (runner, scheduler, requesters) ------------------------------------------

#: The durable report queue (the design's ``TB_Queue``): a stream with a consumer group.
#: Hash tag ``{reports}``, shared with :data:`REPORT_DEAD_LETTERS`: the queue's MULTI
#: blocks (ack + delete, requeue, dead-letter) then stay in one Cluster slot.
REPORT_QUEUE: Final = f"{PREFIX}{{reports}}:queue"
#: Consumer group of the runners on the report queue.
RUNNERS_GROUP: Final = "runners"
#: Pub/Sub channel of live progress; carries no state that is not also in the database.
REPORT_PROGRESS: Final = f"{PREFIX}reports:progress"


def report_mutex(kind: str) -> str:
    """Lease(s) of the report kind's mutex (a hash token -> expiry for N permits)."""
    return f"{PREFIX}mutex:{{{kind}}}:lease"


def report_fence(kind: str) -> str:
    """Fencing counter of the report kind: INCR on every acquisition."""
    return f"{PREFIX}mutex:{{{kind}}}:fence"


def report_mutex_wake(kind: str) -> str:
    """List a releasing holder pushes to, so a waiter blocked on BLPOP takes over at once."""
    return f"{PREFIX}mutex:{{{kind}}}:wake"


#: Queue entries that do not decode or name no known request (fields + reason).
REPORT_DEAD_LETTERS: Final = f"{PREFIX}deadletter:{{reports}}"


#: Lease of the one active scheduler.
SCHEDULER_LEASE: Final = f"{PREFIX}scheduler:lease"

# --- web ------------------------------------------------------------------------------


def login_attempts(who: str) -> str:
    """Failed login counter of a user name or client address, with a TTL."""
    return f"{PREFIX}web:login_attempts:{who}"


def report_quota(kind: str, who: str) -> str:
    """Report requests one user made of one kind in the current hour (int, with a TTL)."""
    return f"{PREFIX}web:report_quota:{kind}:{who}"


def web_session(session_id: str) -> str:
    """A web login (string: the user's principal as JSON) with the session's TTL.

    The signed cookie only carries this id, so logging out or disabling a user ends the
    session on every replica at once.
    """
    return f"{PREFIX}web:session:{session_id}"
