"""Activity functions: one module per step, registered on one blueprint."""

from activities import analysis, files, incident_writes  # noqa: F401  (register functions)
from activities._blueprint import bp

__all__ = ["bp"]
