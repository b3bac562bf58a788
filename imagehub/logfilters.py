"""Log filters that keep third-party noise out of the server's log.

Each is attached, in settings.LOGGING, to the one library logger that emits the noise,
and drops only the messages it names: everything else that library logs still shows.
"""

from __future__ import annotations

import logging


class DropMessages(logging.Filter):
    """Drops records whose message contains one of ``contains``."""

    def __init__(self, contains: list[str] | tuple[str, ...] | str = ()):
        super().__init__()
        self.contains = (contains,) if isinstance(contains, str) else tuple(contains)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.contains)
