"""The in-process bus: a plain synchronous fan-out to every subscriber."""

from __future__ import annotations

import logging
from collections.abc import Callable

from devicecloud.core.events import Event

log = logging.getLogger(__name__)


class MemoryBus:
    """Delivers each event to every handler, in the publisher's call; handlers must not block."""

    def __init__(self) -> None:
        self._handlers: list[Callable[[Event], None]] = []

    def publish(self, event: Event) -> None:
        for handler in tuple(self._handlers):
            try:
                handler(event)
            except Exception:  # one faulty subscriber must not starve the others
                log.exception("event handler failed for %s", type(event).__name__)

    def subscribe(self, handler: Callable[[Event], None],
                  own_only: bool = False) -> Callable[[], None]:
        """Every event here is this process's own, so `own_only` changes nothing."""
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    def want(self, token: str) -> None:
        """Every event is delivered here already."""

    def unwant(self, token: str) -> None:
        """Every event is delivered here already."""
