"""Durable storage adapters behind the core's `Store` port."""
