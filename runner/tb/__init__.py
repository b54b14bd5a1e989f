"""The trial balance pipeline (DOMAIN.md section 5): sources, calendar, transform, steps, report."""
