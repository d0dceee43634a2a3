"""Where a data plane's refusal rows go: the protocol a destination implements.

A sink takes aggregated :class:`~.wire.RefusalRow` batches from the refusal recorder. It writes
a batch all or nothing; when the destination cannot be reached it raises
:class:`SinkUnavailable`, and the recorder keeps the rows (bounded) and retries them later.
Any other exception means the destination refused the data itself: retrying the same rows
would fail the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .wire import RefusalRow


class SinkUnavailable(Exception):
    """The destination is unreachable (or cannot take writes now): keep the rows, retry."""


class RefusalSink(Protocol):
    def write(self, rows: Sequence[RefusalRow]) -> None:
        """Store *rows*, all or nothing.

        :raises SinkUnavailable: on a connectivity failure (the rows are kept and retried).
        """
