"""`segaudit scan` (being written)."""


def scan() -> None:
    """Placeholder until the engine lands."""
