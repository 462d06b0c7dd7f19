"""Face animators: passthrough, warp (embedded default), liveportrait."""
