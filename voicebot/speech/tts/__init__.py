"""Text-to-speech engines behind one interface, plus the disk cache.

``create_tts(config)`` builds the engine named in config; engine SDKs are imported lazily in
their own modules.
"""
