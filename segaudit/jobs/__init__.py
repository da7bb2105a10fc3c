"""The jobs that wire the stages together: ``scan`` and ``score``."""
