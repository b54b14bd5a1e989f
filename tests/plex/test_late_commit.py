"""Plex committing late: after the client's timeout, and after its lookup when that is sooner.

The simulated Plex's ``commit_late`` fault holds a request ``commit_delay_s`` from its
arrival, then creates the ticket and closes without an answer. Before, no test had it:
the simulator always committed before it hung, and the tests looked up at once
(``ambiguous_delay_s: 0``). The sender files exactly one ticket as long as its lookup
comes after the late commit: ``sender.ambiguous_delay_s`` is that bound, and the second
test shows what happens below it.
"""

from __future__ import annotations

from collections import Counter

from core.db.schema import Ticket
from repsys.servers import wait_until
from tests.plex.conftest import add_tickets
from tests.plex.test_sender import events, get, make_sender

COMMIT_DELAY_S = 1.5
TIMEOUT_S = 0.5


def _run_until_filed(sender, sessions, ticket_id: int) -> Ticket:
    """The sender's loop (one pass whenever the row is due) until the ticket is filed."""

    def filed() -> bool:
        sender.run_once()
        return get(sessions, ticket_id).state == "filed"

    wait_until(filed, timeout=20, what="the ticket filed", interval=0.05)
    return get(sessions, ticket_id)


def test_a_late_commit_is_found_by_the_lookup_and_filed_once(
    plex_config, make_sim, sessions, redis_client
) -> None:
    sim = make_sim(faults={"commit_delay_s": COMMIT_DELAY_S})
    cfg = plex_config(
        {
            "endpoint": sim.url,
            "operation_timeout_s": TIMEOUT_S,
            # Above commit_delay_s - operation_timeout_s: the lookup comes after the commit.
            "sender": {"ambiguous_delay_s": COMMIT_DELAY_S},
        }
    )
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sender = make_sender(cfg, sessions, redis_client)
    sim.faults.configure({"queue": ["commit_late"]})
    sender.run_once()
    row = get(sessions, ticket_id)
    assert (row.state, row.last_error_reason) == ("pending", "timeout")
    assert sim.tickets() == []  # Plex has not committed yet

    row = _run_until_filed(sender, sessions, ticket_id)
    wait_until(lambda: sim.in_flight() == 0, timeout=10, what="the held request to end")
    [plex_ticket] = sim.tickets()
    assert row.plex_number == plex_ticket.number
    assert events(sessions, ticket_id) == ["created", "claimed", "retry", "claimed", "filed"]


def test_below_the_bound_a_late_commit_makes_a_second_ticket(
    plex_config, make_sim, sessions, redis_client
) -> None:
    # What the bound is for: a lookup before the late commit finds nothing, the resend
    # files the ticket, then the late commit files it again.
    sim = make_sim(faults={"commit_delay_s": COMMIT_DELAY_S})
    cfg = plex_config({"endpoint": sim.url, "operation_timeout_s": TIMEOUT_S})
    [ticket_id] = add_tickets(sessions, cfg, 1)
    sender = make_sender(cfg, sessions, redis_client)
    sim.faults.configure({"queue": ["commit_late"]})
    sender.run_once()
    _run_until_filed(sender, sessions, ticket_id)
    wait_until(lambda: sim.in_flight() == 0, timeout=10, what="the held request to end")
    assert Counter(t.external_ref for t in sim.tickets()).most_common(1)[0][1] == 2
