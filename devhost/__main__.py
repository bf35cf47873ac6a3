"""Command line: serve a Functions app with the Durable extension on loopback.

    python -m devhost --app function_app --host 127.0.0.1 --port 7071 \
        --data .devhost/run [--time-scale 1] [--workers 8] \
        [--blob-events uploads=on_upload_blob_created]

The app module is imported from the current folder, as the Functions host
does with function_app.py; host.json is read from the module's folder. App
settings come from the environment. Once serving, one line
`devhost ready http://HOST:PORT` goes to stdout; logs go to stderr. SIGTERM or
SIGINT stops the server and the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .blob_events import BlobEventBridge, BlobRoute, azure_blob_lister
from .clock import ScaledClock
from .engine import Engine
from .functions import load_app
from .keys import load_function_key
from .server import DevHostServer, ensure_loopback

log = logging.getLogger("devhost")


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--app", default="function_app", help="app module name (default function_app)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on"
    )
    parser.add_argument(
        "--port", type=int, default=7071, help="TCP port; 0 picks a free one"
    )
    parser.add_argument(
        "--data", type=Path, default=Path(".devhost/run"), help="state folder"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="durable seconds per wall-clock second (default 1)",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="activity worker threads (default 8)"
    )
    parser.add_argument(
        "--blob-events",
        action="append",
        default=[],
        type=BlobRoute.parse,
        metavar="CONTAINER=FUNCTION",
        help="poll CONTAINER and send each new blob to the eventGridTrigger "
        "FUNCTION as a BlobCreated event (repeatable; off by default)",
    )
    parser.add_argument(
        "--blob-connection-setting",
        default="AzureWebJobsStorage",
        help="app setting with the storage connection string for --blob-events "
        "(default AzureWebJobsStorage)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="logging level (default INFO)"
    )
    return parser.parse_args(argv)


async def _serve(
    engine: Engine, server: DevHostServer, bridge: BlobEventBridge | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)

    base_url = await server.start()
    engine.run_in_background()
    bridge_task = None
    if bridge is not None:
        bridge_task = asyncio.create_task(bridge.run(stop))
    print(f"devhost ready {base_url}", flush=True)
    await stop.wait()

    log.info("devhost.stopping")
    if bridge_task is not None:
        await bridge_task
    await server.stop()
    await loop.run_in_executor(None, engine.close)


def _blob_bridge(
    arguments: argparse.Namespace, engine: Engine, server: DevHostServer
) -> BlobEventBridge | None:
    """Build the --blob-events poller, or raise ValueError for a bad setting."""
    if not arguments.blob_events:
        return None
    for route in arguments.blob_events:
        if engine.app.event_grid_function(route.function) is None:
            raise ValueError(
                f"--blob-events names {route.function!r}, which is not an "
                f"eventGridTrigger function of the app"
            )
    connection_string = os.environ.get(arguments.blob_connection_setting)
    if not connection_string:
        raise ValueError(
            f"--blob-events needs the app setting {arguments.blob_connection_setting} "
            f"with a storage connection string"
        )
    return BlobEventBridge(
        arguments.blob_events,
        azure_blob_lister(connection_string),
        server.deliver_event_grid_to,
        engine.read_meta,
        engine.write_meta,
    )


def main(argv: list[str] | None = None) -> int:
    arguments = _parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        host = ensure_loopback(arguments.host)
    except ValueError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    if arguments.workers < 1:
        print("devhost: --workers must be at least 1", file=sys.stderr)
        return 2
    if not arguments.time_scale > 0:
        print("devhost: --time-scale must be greater than 0", file=sys.stderr)
        return 2

    data_dir = arguments.data.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    function_key, key_path = load_function_key(data_dir)
    if key_path is None:
        log.info("function_key.source env=DEVHOST_FUNCTION_KEY")
    else:
        log.info("function_key.source path=%s", key_path)

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    index = load_app(arguments.app)
    engine = Engine(
        index,
        data_dir,
        clock=ScaledClock(arguments.time_scale),
        workers=arguments.workers,
    )
    server = DevHostServer(
        engine, function_key=function_key, host=host, port=arguments.port
    )
    try:
        bridge = _blob_bridge(arguments, engine, server)
    except ValueError as exc:
        engine.close()
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    log.info(
        "devhost.starting app=%s data=%s time_scale=%s workers=%d",
        arguments.app,
        data_dir,
        arguments.time_scale,
        arguments.workers,
    )
    asyncio.run(_serve(engine, server, bridge))
    log.info("devhost.stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
