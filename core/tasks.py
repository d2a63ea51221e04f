"""Stopping background tasks: the one way a service cancels its tasks and waits for them."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, swallow_errors: bool = False) -> None:
    """Cancel every task, then wait until each has finished.

    Cancelling all first lets them wind down together instead of one after another. A task's
    own exception is raised unless ``swallow_errors`` (a service stopping for good may not care
    why a helper task died; it must still stop).
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    ignored: tuple[type[BaseException], ...] = (asyncio.CancelledError, Exception) if swallow_errors \
        else (asyncio.CancelledError,)
    for task in tasks:
        with contextlib.suppress(*ignored):
            await task


__all__ = ["cancel_and_wait"]
