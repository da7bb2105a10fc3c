"""cleanlab's progress bars: segaudit's progress protocol drawn with tqdm.

cleanlab draws ``tqdm.auto`` bars on stderr when ``verbose``; the layer draws the
same bars (description, total, unit) over the engine's phases, in order. tqdm comes
with cleanlab and is no dependency of segaudit: without it there are no bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def tqdm_class() -> Any:
    """``tqdm.auto.tqdm``, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class Bars:
    """A :class:`segaudit.progress.Progress` whose phases are shown, one after the other,
    as tqdm bars titled ``descriptions`` (phases past the last title are not shown)."""

    def __init__(self, descriptions: Sequence[str], enabled: bool = True) -> None:
        self._titles = list(descriptions)
        self._tqdm = tqdm_class() if enabled else None
        self._bar: Any = None

    def start(self, description: str, total: int) -> None:
        self.finish()
        if self._tqdm is not None and self._titles:
            self._bar = self._tqdm(desc=self._titles.pop(0), total=total)

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def count_bar(total: int) -> None:
    """The bar cleanlab's ``common_label_issues`` draws over the issue pixels (always,
    whatever ``verbose`` says): untitled, ``total`` items, drawn complete."""
    tqdm = tqdm_class()
    if tqdm is None:
        return
    bar = tqdm(total=total)
    bar.update(total)
    bar.close()
