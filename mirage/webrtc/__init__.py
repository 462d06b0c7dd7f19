"""Signalling and sessions: HTTP offer/answer (``/offer``, WHIP) → one Session per peer
connection, its outputs fanned out to WHEP viewers; every aiortc workaround in one module."""
