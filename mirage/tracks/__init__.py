"""The output tracks: an inbound aiortc track → the engine → paced avatar video and
converted voice, released together by one playout clock per session."""
