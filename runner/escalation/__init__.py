"""The escalation report and the quarter-hour tool check (kinds ``escalation``, ``tool_check``)."""
