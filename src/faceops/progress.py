"""How library code that runs for long reports progress: through a bar factory its caller passes in.

A :data:`ProgressBar` is ``bar(description, total, unit)``, a context manager yielding ``advance(n)``
(the stages pass ``stages._common.progress_bar``, a rich bar); :func:`no_progress` reports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

__all__ = ["ProgressBar", "no_progress"]

ProgressBar = Callable[[str, int, str], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def no_progress(description: str, total: int, unit: str = "items") -> Iterator[Callable[[int], None]]:
    """A :data:`ProgressBar` that shows nothing."""
    yield lambda n=1: None
