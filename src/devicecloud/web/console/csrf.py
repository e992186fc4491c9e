"""CSRF protection: every console form carries the session's token in a hidden `csrf` field."""

from __future__ import annotations

import hmac

from devicecloud.web.console.sessions import Session

FIELD = "csrf"


def form_is_genuine(session: Session, submitted: object) -> bool:
    """Whether the form came from a page this session was shown."""
    return isinstance(submitted, str) and hmac.compare_digest(submitted.encode(),
                                                              session.csrf.encode())
