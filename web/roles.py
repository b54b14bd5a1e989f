"""Who may do what: one table for the pages and the JSON API.

An API route allows exactly the roles of the page that shows the same thing, so a role
cannot read through ``/api/v1`` what its pages do not show it. ``admin`` passes every
check (``Principal.has_any``). The table in ``web/README.md`` and the role walk in
``tests/web/test_role_walk.py`` follow this module.
"""

from __future__ import annotations

#: The operator's form, a ticket's own page, filing a ticket.
REPORTERS = ("operator", "supervisor")
#: The floor boards: machines and upcoming tool changes.
FLOOR = ("operator", "supervisor")
#: Every ticket and episode, silences.
SUPERVISOR = ("supervisor",)
#: Report requests (each kind narrows it further: ``web.views.reports.KIND_ROLES``).
REPORT_ROLES = ("controller", "supervisor")
