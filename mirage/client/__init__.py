"""Clients of a Mirage server: the desktop client (sources → link → sinks: virtual
camera, virtual microphone, recording), the relay API for bots, and the measuring
probe the tests and benchmarks use."""
