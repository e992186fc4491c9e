"""Sans-I/O protocol codecs: bytes in, messages out, and back."""
