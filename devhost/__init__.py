"""Local stand-in for the Azure Functions host with the Durable Functions extension.

`python -m devhost` serves an app's functions on a loopback port (see
`devhost.__main__`). Tests use the engine in-process::

    engine = Engine("function_app", tmp_path, clock=VirtualClock())
    instance_id = engine.start_new("my_orchestrator", {"x": 1})
    engine.run_until_idle()
    engine.get_status(instance_id)["runtimeStatus"]  # "Completed"

Never deployed: .funcignore leaves this folder out of the package.
"""

from .clock import Clock, ScaledClock, VirtualClock, WallClock
from .engine import Engine
from .errors import (
    EngineError,
    InstanceExists,
    InstanceFinished,
    InstanceNotFound,
    InvalidOperation,
    UnknownOrchestrator,
)
from .functions import AppIndex, load_app
from .server import DevHostServer

__all__ = [
    "AppIndex",
    "Clock",
    "DevHostServer",
    "Engine",
    "EngineError",
    "InstanceExists",
    "InstanceFinished",
    "InstanceNotFound",
    "InvalidOperation",
    "ScaledClock",
    "UnknownOrchestrator",
    "VirtualClock",
    "WallClock",
    "load_app",
]
