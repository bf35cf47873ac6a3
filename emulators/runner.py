"""Starting and stopping the emulators, each as its own aiohttp app on its own port.

Two ways to run them in-process:

- ``await start_emulators(config)`` on the running event loop, then
  ``await running.stop()`` (or ``async with await start_emulators(...)``);
- ``start_in_thread(config)`` on a private loop in a daemon thread, then
  ``thread.stop()`` (or ``with start_in_thread(...)``), for synchronous code.

Port 0, the default, picks a free port. A new emulator is added by registering
its app factory in ``EMULATORS``; the CLI then gets a ``--<name>-port`` option.
"""

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from emulators import anyrun, defender, sentinel
from emulators.clock import EmulatedClock
from emulators.config import ConfigError, EmulatorConfig, loopback_host

log = logging.getLogger(__name__)

AppFactory = Callable[[EmulatorConfig, EmulatedClock], web.Application]

# Emulator name -> app factory, in the order they start and are printed.
EMULATORS: dict[str, AppFactory] = {
    "anyrun": anyrun.build_app,
    "sentinel": sentinel.build_app,
    "defender": defender.build_app,
}
# Wall seconds that stopping waits for open requests, such as monitor streams.
SHUTDOWN_TIMEOUT = 2.0


@dataclass
class RunningEmulators:
    """Emulators serving on a loopback address: base URLs and apps by emulator name."""

    urls: dict[str, str]
    apps: dict[str, web.Application]
    clock: EmulatedClock
    _runners: list[web.AppRunner] = field(default_factory=list, repr=False)

    @property
    def anyrun_url(self) -> str:
        return self.urls["anyrun"]

    @property
    def sentinel_url(self) -> str:
        return self.urls["sentinel"]

    @property
    def defender_url(self) -> str:
        return self.urls["defender"]

    @property
    def anyrun(self) -> anyrun.AnyrunEmulator:
        return self.apps["anyrun"][anyrun.ANYRUN]

    @property
    def sentinel(self) -> sentinel.SentinelEmulator:
        return self.apps["sentinel"][sentinel.SENTINEL]

    @property
    def defender(self) -> defender.DefenderEmulator:
        return self.apps["defender"][defender.DEFENDER]

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        if runners:
            log.info("emulators stopped")

    async def __aenter__(self) -> "RunningEmulators":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host} port {port}: {exc}") from exc
    return sock


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def start_emulators(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    ports: Mapping[str, int] | None = None,
) -> RunningEmulators:
    """Start every emulator in ``EMULATORS`` on the running loop and return them.

    ``ports`` maps emulator names to ports (missing or 0: a free port). Raises
    ConfigError for a non-loopback host, an unknown name or a busy port.
    """
    host = loopback_host(host)
    ports = dict(ports or {})
    unknown = set(ports) - set(EMULATORS)
    if unknown:
        raise ConfigError(
            f"unknown emulators {sorted(unknown)}; known: {', '.join(EMULATORS)}"
        )
    clock = EmulatedClock(config.speed)
    running = RunningEmulators(urls={}, apps={}, clock=clock)
    try:
        for name, factory in EMULATORS.items():
            app = factory(config, clock)
            runner = web.AppRunner(
                app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
            )
            await runner.setup()
            running._runners.append(runner)
            sock = _listen(host, ports.get(name, 0))
            await web.SockSite(runner, sock).start()
            running.apps[name] = app
            running.urls[name] = _base_url(host, sock.getsockname()[1])
            log.info("%s emulator listening on %s", name, running.urls[name])
    except BaseException:
        await running.stop()
        raise
    return running


class EmulatorThread:
    """Emulators on a private event loop in a daemon thread."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
    ) -> None:
        self._config = config
        self._host = host
        self._ports = ports
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.running: RunningEmulators | None = None

    @property
    def urls(self) -> dict[str, str]:
        if self.running is None:
            raise RuntimeError("the emulators are not running")
        return dict(self.running.urls)

    def start(self, timeout: float = 10.0) -> dict[str, str]:
        """Start the thread and return the base URLs once every emulator serves."""
        if self._thread is not None:
            raise RuntimeError("the emulator thread was already started")
        self._thread = threading.Thread(target=self._run, name="emulators", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the emulators did not start within {timeout} s")
        if self._error is not None:
            raise self._error
        return self.urls

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the emulators and wait up to ``timeout`` seconds for the thread."""
        if self._loop is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(
                    f"the emulator thread did not stop within {timeout} s"
                )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                self.running = loop.run_until_complete(
                    start_emulators(self._config, host=self._host, ports=self._ports)
                )
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.running.stop())
        finally:
            loop.close()

    def __enter__(self) -> "EmulatorThread":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(config: EmulatorConfig, **options: Any) -> EmulatorThread:
    """Start the emulators in a daemon thread; see EmulatorThread for ``options``."""
    thread = EmulatorThread(config, **options)
    thread.start()
    return thread
