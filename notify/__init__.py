"""Follow-through of tickets: escalation in plant working time, routing, deliveries.

``notify.escalation`` (pure policy), ``notify.sweep`` (writes ``tickets.escalation_level``
and the ticket events that are routed), ``notify.routing`` (Alertmanager's route tree,
pure) and ``notify.dispatch`` (grouping and timing, pure). See notify/README.md.
"""
