"""Emulator of the ANY.RUN Sandbox API (v1)."""

from emulators.anyrun.app import ANYRUN, AnyrunEmulator, build_app

__all__ = ["ANYRUN", "AnyrunEmulator", "build_app"]
