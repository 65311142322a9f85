"""Run an iterator in a background thread, a bounded amount ahead of its consumer.

Used to overlap a server's network I/O and response parsing with hashing and packing.
An exception raised by the producer is re-raised in the consumer, in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class _Done:
    pass


def prefetch(source: Iterator[T], *, max_cost: int, cost: Callable[[T], int] = lambda _: 1) -> Iterator[T]:
    """Yield the items of ``source``, produced by a thread that holds at most ``max_cost`` ahead
    (a single item costlier than that still passes, alone)."""
    q: queue.Queue[Any] = queue.Queue()
    cond = threading.Condition()
    state = {"in_hand": 0, "stop": False}

    def room(c: int) -> bool:
        return bool(state["stop"]) or state["in_hand"] == 0 or state["in_hand"] + c <= max_cost

    def produce() -> None:
        try:
            for item in source:
                c = cost(item)
                with cond:
                    cond.wait_for(lambda c=c: room(c))  # type: ignore[misc]
                    if state["stop"]:
                        return
                    state["in_hand"] += c
                q.put((item, c))
            q.put(_Done)
        except BaseException as exc:  # handed over to the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, name="mailvault-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is _Done:
                return
            if isinstance(got, BaseException):
                raise got
            item, c = got
            with cond:
                state["in_hand"] -= c
                cond.notify()
            yield item
    finally:
        with cond:
            state["stop"] = True
            cond.notify()
        thread.join(timeout=10)
