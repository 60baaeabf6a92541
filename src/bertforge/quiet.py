"""Third-party messages that tell our users nothing, dropped at their source: one logging filter
for a message a library logs on every run, used while (or from when) that library runs."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


class DropMessages(logging.Filter):
    """Drops log records whose message contains any of `fragments`."""

    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(f in message for f in self.fragments)


def drop_always(logger_name: str, *fragments: str) -> None:
    """Install the filter for the rest of the process (once per logger and fragments)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, DropMessages) and f.fragments == fragments for f in logger.filters):
        logger.addFilter(DropMessages(*fragments))


@contextmanager
def dropped(logger_name: str, *fragments: str) -> Iterator[None]:
    """The filter only around one call (a library function whose other messages may matter)."""
    logger, drop = logging.getLogger(logger_name), DropMessages(*fragments)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
