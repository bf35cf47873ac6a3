"""Local emulators of the ANY.RUN Sandbox API, the Microsoft Sentinel APIs and the
Microsoft Defender for Endpoint API.

See emulators/README.md for the CLI, the in-process API and the control routes.
"""

from emulators.clock import EmulatedClock
from emulators.config import ConfigError, EmulatorConfig
from emulators.runner import (
    EMULATORS,
    EmulatorThread,
    RunningEmulators,
    start_emulators,
    start_in_thread,
)

__all__ = [
    "EMULATORS",
    "ConfigError",
    "EmulatedClock",
    "EmulatorConfig",
    "EmulatorThread",
    "RunningEmulators",
    "start_emulators",
    "start_in_thread",
]
