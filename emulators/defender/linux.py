"""Running a library script with bash, as Live Response does on a Linux device.

The script runs in a private run folder (its working directory, HOME and
TMPDIR) with a small environment: PATH starts with tests/scripts, where the
``mdatp`` stand-in is, and MDATP_FAKE_QUARANTINE and MDATP_FAKE_LOG point at
the device's folders. The emulator's own environment, with its secrets, is not
passed on. bash runs in a new session, and a timeout or a cancellation kills
its whole process group. The run folder is removed afterwards.
"""

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emulators.defender import envelope
from emulators.defender.devices import Device

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MDATP_STAND_IN_DIR = REPO_ROOT / "tests" / "scripts"
# Wall seconds to read the rest of the output after bash has exited.
PIPE_DRAIN_SECONDS = 2.0


class ScriptTimeout(Exception):
    """The script ran past the RunScript time limit and was killed."""


@dataclass(frozen=True)
class ScriptRun:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class PreparedArgs:
    """The script's arguments after the envelope's path was moved onto the device."""

    argv: list[str]
    fields: dict[str, object] | None


def prepare_args(args: str | None, device: Device) -> PreparedArgs:
    """Split Args on whitespace and rewrite the path of a single v1 envelope.

    NOTE: how Live Response splits Args for a bash script is not documented;
    splitting on whitespace is a guess. A token that is not a decodable
    envelope is passed on unchanged, so the script reports the problem itself.
    """
    argv = (args or "").split()
    if len(argv) != 1:
        return PreparedArgs(argv=argv, fields=None)
    fields = envelope.decode(argv[0])
    if fields is None:
        return PreparedArgs(argv=argv, fields=None)
    path = fields.get("path")
    if isinstance(path, str) and path.startswith("/"):
        rewritten = dict(fields, path=device.linux_disk_path(path))
        return PreparedArgs(argv=[envelope.encode(rewritten)], fields=fields)
    return PreparedArgs(argv=argv, fields=fields)


class BashRunner:
    """Runs one script; ``kill()`` stops it at once from any callback on the loop."""

    def __init__(self, work_root: Path) -> None:
        self._work_root = work_root
        self._process: asyncio.subprocess.Process | None = None

    def kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            _kill_group(process.pid)

    async def run(
        self,
        script: bytes,
        script_name: str,
        argv: list[str],
        device: Device,
        wall_timeout: float,
    ) -> ScriptRun:
        """Run the script and return its exit code and output.

        Raises ScriptTimeout after ``wall_timeout`` wall seconds, and
        FileNotFoundError when bash is not installed.
        """
        bash = shutil.which("bash")
        if bash is None:
            raise FileNotFoundError("bash is not installed")
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self._work_root))
        try:
            script_path = run_dir / script_name
            script_path.write_bytes(script)
            tmp = run_dir / "tmp"
            tmp.mkdir()
            env = {
                "PATH": f"{MDATP_STAND_IN_DIR}{os.pathsep}"
                f"{os.environ.get('PATH', os.defpath)}",
                "HOME": str(run_dir),
                "TMPDIR": str(tmp),
                "LC_ALL": "C",
                "MDATP_FAKE_QUARANTINE": str(device.quarantine),
                "MDATP_FAKE_LOG": str(device.mdatp_log),
            }
            self._process = await asyncio.create_subprocess_exec(
                bash,
                str(script_path),
                *argv,
                cwd=run_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            return await self._wait(self._process, wall_timeout)
        finally:
            process, self._process = self._process, None
            if process is not None:
                if process.returncode is None:
                    _kill_group(process.pid)
                    await process.wait()
                else:
                    # Background children of the script may still run.
                    _kill_group(process.pid)
            shutil.rmtree(run_dir, ignore_errors=True)

    @staticmethod
    async def _wait(
        process: asyncio.subprocess.Process, wall_timeout: float
    ) -> ScriptRun:
        """Wait for bash to exit, then kill what it left running and read the pipes.

        The result does not wait for background children of the script, which
        could keep the pipes open.
        """
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.ensure_future(process.stdout.read()),
            asyncio.ensure_future(process.stderr.read()),
        ]
        try:
            try:
                await asyncio.wait_for(process.wait(), max(0.0, wall_timeout))
            except TimeoutError:
                raise ScriptTimeout from None
            _kill_group(process.pid)
            done, _ = await asyncio.wait(readers, timeout=PIPE_DRAIN_SECONDS)
            stdout, stderr = (
                reader.result() if reader in done else b"" for reader in readers
            )
        finally:
            for reader in readers:
                reader.cancel()
        assert process.returncode is not None
        return ScriptRun(
            exit_code=process.returncode,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
        )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
