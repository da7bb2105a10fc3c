"""segaudit: find annotation errors in semantic-segmentation datasets."""

from __future__ import annotations

__version__ = "0.1.0"
