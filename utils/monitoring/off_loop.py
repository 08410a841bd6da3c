"""Blocking work off a gevent worker's event loop: log commits and model loads.

Under gunicorn's gevent workers `threading` is monkey-patched: the API's log writers are
greenlets in the one OS thread that serves every request. A SQLite commit of the prediction
log that waits for the other worker's write lock (SQLite's busy handler sleeps in C) or a WAL
checkpoint's fsync then stops every request of that worker for as long; so does loading a
newly deployed model (0.2 s tabular, over 1 s NLU). Here such a call runs in gevent's pool of
real threads instead, and the calling greenlet waits for it cooperatively (sqlite3 and file
I/O release the GIL; Python code shares it with the loop in 5 ms slices), so requests keep
being served meanwhile. Without gevent it is a plain call. Standard library only, like
its callers' readers.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def run_off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, in a real thread when this process runs on a monkey-patched gevent hub."""
    gevent = sys.modules.get("gevent")
    if gevent is not None:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)
