"""Listening to a Redis pub/sub channel for as long as the process runs.

The bus and the control channel both need the same loop: subscribe, hand each message on,
and after a lost connection subscribe again with jittered backoff (0.1 s doubling to 5 s),
without ever giving up. ``on_subscribed`` runs after each (re)subscription (the bus catches
up there on what it missed), ``on_lost`` after each loss (the bus reports not-ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

BACKOFF_START = 0.1
BACKOFF_CAP = 5.0


async def listen_forever(client: Any, channel: str, on_message: Callable[[bytes], Awaitable[None]],
                         *, name: str,
                         on_subscribed: Callable[[], Awaitable[None]] | None = None,
                         on_lost: Callable[[Exception], None] | None = None) -> None:
    delay = BACKOFF_START
    while True:
        pubsub: Any = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            if on_subscribed is not None:
                await on_subscribed()
            delay = BACKOFF_START
            while True:
                raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if raw is not None and raw["type"] in ("message", b"message"):
                    await on_message(raw["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_lost is not None:
                on_lost(exc)
            log.warning("%s lost (%s: %s); reconnecting", name, type(exc).__name__, exc)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(BACKOFF_CAP, delay * 2)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
