"""Event buses behind the core's `Bus` port."""
