"""The web app's routers, one module per area: login, operator, boards, silences, reports, API."""
