"""One sink batch to Redis: its rows as one JSON argument, its commands in one round trip.

Split from :mod:`collector.sink` (the buffer and its writer thread) because this is the
part whose cost per signal decides what one collector process can carry: how the rows
become bytes and how the commands reach Redis.
"""

from __future__ import annotations

import json
from typing import Any

import hiredis
import orjson
import redis

from collector.rows import Row
from core.redis import RedisCommands

_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps_rows(rows: list[Row]) -> bytes | str:
    """The rows of a partition as XADD_SCRIPT's one argument: compact, UTF-8 as it is.

    Rows hold strings only, for which orjson writes the very text of ``json`` with
    ``ensure_ascii=False`` at about a fifth of its time (the batch's largest Python cost
    after the reader). A string orjson refuses (a lone surrogate from a server's text)
    goes through ``json``, as before.
    """
    try:
        return orjson.dumps(rows)
    except orjson.JSONEncodeError:
        return _json_dumps(rows)


def send_batch(client: RedisCommands, commands: list[tuple[str | bytes, ...]]) -> list[Any]:
    """One round trip for the batch.

    With a plain or Sentinel client the commands are packed by hiredis and written on
    one pooled connection, replies read back in order: redis-py's pipeline spends most
    of its time re-checking and packing arguments that are already strings, and this
    path is what lets one collector carry a plant. A Cluster client (no single
    connection pool) uses its pipeline, which splits the batch by slot.
    """
    if not commands:
        return []
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        pipe = client.pipeline(transaction=False)
        for cmd in commands:
            pipe.execute_command(*cmd)
        return list(pipe.execute())
    conn = pool.get_connection()
    try:
        # hiredis's stub types the argument as a 1-tuple; it takes any tuple of args.
        packed = [hiredis.pack_command(c) for c in commands]  # type: ignore[arg-type]
        conn.send_packed_command([b"".join(packed)])  # one write, not one per command
        errors = []
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:  # read every reply, then fail the batch
                errors.append(exc)
        if errors:
            raise errors[0]
        return replies
    except BaseException:
        conn.disconnect()  # replies may be left unread: never reuse the connection
        raise
    finally:
        pool.release(conn)
