"""``python -m segaudit``: the same as the ``segaudit`` command."""

from segaudit.cli import main

main()
