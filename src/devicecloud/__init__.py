"""devicecloud: a self-hosted cloud for ESP32 and M5Stack device fleets."""

__version__ = "0.1.0"
