"""Clients of a Mirage server: the measuring probe (and, later, the virtual camera)."""
