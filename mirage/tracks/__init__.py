"""aiortc MediaStreamTrack adapters: inbound track → engine → paced outbound frames."""
