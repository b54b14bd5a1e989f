"""Contracts shared by every RepSys process.

``core`` holds what two packages must agree on and nothing else: configuration models,
the data model of messages between processes, Redis key and stream names, connection
factories, the SQL schema and its migrations, process lifecycle, metrics, logging and
base errors. It imports no sibling package; the siblings import it.
"""
