"""Real-time machinery with no WebRTC and no model internals: bounded slots, rings and
delay lines, worker threads, the model guard, quality levels, the voice pipeline and chain."""
