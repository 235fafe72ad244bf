"""``echotune-mcp auth-server``: a small OAuth 2.1 authorization server for self-hosters (see docs/AUTH.md).

It issues the RFC 9068 JWT access tokens the HTTP transport's resource server accepts, with ``amr`` saying
truthfully whether the user signed in with a password only or with a TOTP second factor too.
"""
