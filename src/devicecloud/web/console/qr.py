"""QR code images of bind URLs (pure Python, through segno)."""

from __future__ import annotations

import io

import segno


def qr_png(text: str, scale: int = 6) -> bytes:
    """A black-on-white PNG of `text` with a quiet zone, readable by phone cameras."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()
