"""Imported once by a batch's forkserver, before it forks any worker: what every worker needs
(the rules, the layout registry, pypdfium2) is loaded and frozen there, so that a new worker,
and the one that replaces a worker a letter killed, starts in milliseconds, not a quarter second.

Invariant: importing this module touches no file and no letter; it only loads code.
"""

from __future__ import annotations

import contextlib

from .runner import settle_heap

with contextlib.suppress(ImportError):  # pypdf is the fallback engine
    import pypdfium2  # noqa: F401

settle_heap()
