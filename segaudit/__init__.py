"""segaudit: find annotation errors in semantic-segmentation datasets."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``segaudit.Scanner``, imported on first use (``import segaudit`` stays light)."""
    if name == "Scanner":
        from segaudit.jobs.scanner import Scanner

        return Scanner
    raise AttributeError(f"module 'segaudit' has no attribute {name!r}")
