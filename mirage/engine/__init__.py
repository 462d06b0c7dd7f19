"""Real-time machinery with no WebRTC and no model internals: slots, rings, workers."""
