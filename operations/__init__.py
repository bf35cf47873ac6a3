"""Operator endpoints of the connector: list, rerun and purge enrichments.

The routes are declared in function_app.py; the logic is in `handlers`, the
input checks in `params` and the task hub access in `taskhub`.
"""

from operations.handlers import list_incidents, purge_incidents, rerun_incident

__all__ = ["list_incidents", "purge_incidents", "rerun_incident"]
