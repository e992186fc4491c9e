"""The rules of devicecloud: plain Python, no transport, no framework, no SQL."""
