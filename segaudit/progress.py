"""A progress protocol so library code reports progress without printing."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What the library calls while it works; the CLI passes a Rich implementation."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, amount: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """The default: report nothing."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass
