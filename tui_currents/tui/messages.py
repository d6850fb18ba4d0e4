"""Messages the app posts to its screens."""

from __future__ import annotations

from textual.message import Message


class BackendReady(Message):
    """The backend has started (engine in-process, or console of a service); screens load their data."""
