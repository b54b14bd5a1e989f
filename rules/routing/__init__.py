"""Routing of ticket events to receivers: the last stage of the rules' noise control.

``tree`` (Alertmanager's route tree: which receivers), ``dispatch`` (aggregation groups:
when, and together with what). Pure: the ``notify`` package runs them against the database
and sends through its outbox; ``repsys rules routes`` and the golden cases run them alone.
"""
