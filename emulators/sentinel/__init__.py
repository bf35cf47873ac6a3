"""Emulator of the Microsoft Sentinel incident (ARM) and TI upload APIs."""

from emulators.sentinel.app import SENTINEL, SentinelEmulator, build_app

__all__ = ["SENTINEL", "SentinelEmulator", "build_app"]
