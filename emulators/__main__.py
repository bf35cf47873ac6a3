"""Command line: run all emulators in one process until SIGTERM or SIGINT.

    python -m emulators --host 127.0.0.1 --anyrun-port 8401 --sentinel-port 8402 \
        --defender-port 8403 [--speed 120] [--incidents DIR]

Once every emulator serves, it prints one line to stdout, for example
``emulators ready anyrun=http://127.0.0.1:8401 sentinel=http://127.0.0.1:8402
defender=http://127.0.0.1:8403``. The secrets come from ANYRUN_API_KEY and
LOCAL_BEARER_TOKEN.
"""

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from emulators.config import ConfigError, EmulatorConfig, loopback_host
from emulators.runner import EMULATORS, start_emulators

log = logging.getLogger("emulators")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulators",
        description="Run local emulators of the ANY.RUN, Microsoft Sentinel and "
        "Microsoft Defender for Endpoint APIs. Secrets come from the environment "
        "variables ANYRUN_API_KEY (the API key the ANY.RUN emulator accepts) and "
        "LOCAL_BEARER_TOKEN (the bearer token the Sentinel and Defender emulators "
        "accept).",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on (default 127.0.0.1); others are rejected",
    )
    for name in EMULATORS:
        parser.add_argument(
            f"--{name}-port",
            type=int,
            default=0,
            metavar="PORT",
            help=f"TCP port of the {name} emulator (default 0: a free port)",
        )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="emulated seconds per wall second (default 1); with 120 a 120-second "
        "analysis takes 1 s",
    )
    parser.add_argument(
        "--incidents",
        type=Path,
        metavar="DIR",
        help="directory of Sentinel incident trigger bodies (*.json) to seed",
    )
    parser.add_argument(
        "--parallel-limit",
        type=int,
        default=5,
        help="ANY.RUN analyses that may run at once (default 5; -1 unlimited)",
    )
    parser.add_argument(
        "--daily-quota",
        type=int,
        default=-1,
        help="ANY.RUN submissions per emulated UTC day (default -1: unlimited)",
    )
    parser.add_argument(
        "--ti-rate-limit",
        type=int,
        default=100,
        help="TI upload requests per token per emulated minute (default 100)",
    )
    parser.add_argument(
        "--defender-data",
        type=Path,
        metavar="DIR",
        help="folder for the Defender devices' disk and quarantine folders and the "
        "script runs (default: a temporary folder, removed on exit); created if "
        "missing, and kept",
    )
    parser.add_argument(
        "--defender-run-any-script",
        action="store_true",
        help="let Linux devices run any library script with bash, not only the "
        "repository's scripts/liveresponse/*.sh",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the log on stderr (default INFO)",
    )
    return parser


async def _serve(config: EmulatorConfig, host: str, ports: dict[str, int]) -> None:
    running = await start_emulators(config, host=host, ports=ports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    urls = " ".join(f"{name}={url}" for name, url in running.urls.items())
    print(f"emulators ready {urls}", flush=True)
    try:
        await stop.wait()
        log.info("stop signal received")
    finally:
        await running.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        host = loopback_host(args.host)
        config = EmulatorConfig.from_env(
            speed=args.speed,
            incidents_dir=args.incidents,
            parallel_limit=args.parallel_limit,
            daily_quota=args.daily_quota,
            ti_rate_limit=args.ti_rate_limit,
            defender_data_dir=args.defender_data,
            defender_run_any_script=args.defender_run_any_script,
        )
        ports = {name: getattr(args, f"{name}_port") for name in EMULATORS}
        asyncio.run(_serve(config, host, ports))
    except ConfigError as exc:
        print(f"emulators: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
