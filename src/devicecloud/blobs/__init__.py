"""File content stores behind the core's `Blobs` port."""
