"""Authorization for the HTTP transport: who is calling (context), what each tool needs (policy), how tokens are
checked (verifier) and the HTTP layer that enforces it (http). Over stdio none of it applies: the caller is the
local user."""
