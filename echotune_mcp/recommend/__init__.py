"""Listening intelligence: the owner's listening history, and (later) recommendation built on it."""
