"""A local mailbox for the demo: an SMTP server that files each mail in a directory."""
