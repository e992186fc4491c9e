"""Gateways: turn a transport's bytes into core calls, and core events into bytes."""
