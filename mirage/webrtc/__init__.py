"""Signalling and sessions: HTTP offer/answer → one Session per peer connection."""
