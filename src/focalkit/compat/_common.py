"""What several presets share."""

from __future__ import annotations


class PeerAssertionError(ValueError, AssertionError):
    """Bad input the peer rejects with an ``assert``: a ``ValueError`` (focalkit's rule), and an
    ``AssertionError`` (the peer's type), so that either ``except`` clause catches it."""


class PeerIndexError(ValueError, IndexError):
    """Bad input the peer fails on with an ``IndexError`` (a missing dimension): both types."""
