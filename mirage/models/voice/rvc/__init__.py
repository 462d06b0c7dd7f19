"""RVC voice conversion: weight-compatible networks (``build``, ``synthesizer``, ``rmvpe``,
``hubert``), checkpoint loaders (``checkpoint``), the streaming converter (``converter``).

The package itself imports nothing: the registry asks ``files.unavailable_reason`` and
names ``converter:RvcConverter``, so listing backends does not load torch.
"""
