"""Emulator of the Microsoft Defender for Endpoint API (machines, Live Response,
advanced hunting on DeviceFileEvents, alerts)."""

from emulators.defender.app import DEFENDER, DefenderEmulator, build_app

__all__ = ["DEFENDER", "DefenderEmulator", "build_app"]
