"""Voice converters: passthrough, dsp (embedded default), rvc."""
