"""vidgen media service: stores each finished video, verified, and reports where it is.

Consumes ``VideoReady``; streams the output into the object store; checks it with PyAV;
emits ``GenerationCompleted``, ``GenerationFailed`` or ``VideoUrlExpired``.
Run it with ``python -m vidgen_media``.
"""
