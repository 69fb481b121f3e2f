"""Background tasks of long-lived components (listeners, heartbeats, workers)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_task(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; its outcome is of no interest any more."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
