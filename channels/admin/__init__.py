"""The merchant console: accounts and roles, the session cookie, its pages and its API."""
