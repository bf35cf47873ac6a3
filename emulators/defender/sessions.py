"""Live Response sessions: each machine action runs as a task on the emulator's loop.

An action waits Pending until its device is online, for at most the queue
timeout (then TimeOut). It is InProgress from the start of the session, runs
its commands in order and stops at the first that fails: Succeeded when all
completed, Failed otherwise. A cancelled action is Cancelled at once, and its
running script is killed. Script runs are bounded in time, and ``close``
kills them when the emulator stops.

On Linux devices a RunScript runs the library script with bash (linux.py).
On Windows devices the emulator performs what anyrun-upload.ps1 does
(windows.py), because PowerShell is not run. The real Args value lives only in
the task, never in the stored action.
"""

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.clock import EmulatedClock
from emulators.defender import envelope, linux, windows
from emulators.defender.actions import (
    CANCELLED,
    COMMAND_FAILED,
    COMPLETED,
    CREATED,
    FAILED,
    IN_PROGRESS,
    REQUESTOR,
    SUCCEEDED,
    TIMEOUT,
    CommandState,
    MachineAction,
    ScriptResult,
    UploadAttempt,
    defender_time,
)
from emulators.defender.commands import PUT_FILE, RUN_SCRIPT
from emulators.defender.devices import Device
from emulators.defender.library import Library, LibraryFile
from emulators.defender.redaction import redact_text

log = logging.getLogger(__name__)

SCRIPTS_DIR = linux.REPO_ROOT / "scripts" / "liveresponse"
WINDOWS_SCRIPT = SCRIPTS_DIR / "anyrun-upload.ps1"
# Defender queues a session for an unavailable device for up to three days.
QUEUE_TIMEOUT_SECONDS = 3 * 24 * 3600.0
# NOTE: the time from request to session start on an online device is not
# documented, and five emulated seconds is a guess.
SESSION_START_SECONDS = 5.0
# RunScript times out after 10 minutes (documented). The scripts do real work
# in wall time, so a run gets at least MIN_SCRIPT_WALL_SECONDS of wall time
# even when 10 emulated minutes pass faster than that.
SCRIPT_TIMEOUT_SECONDS = 600.0
MIN_SCRIPT_WALL_SECONDS = 30.0
# Wall seconds that stopping waits for the killed runs to finish.
STOP_WAIT_SECONDS = 5.0


@dataclass
class _Run:
    """An active action with the real Args values of its commands by index."""

    action: MachineAction
    device: Device
    args: dict[int, str]
    task: asyncio.Task[None] | None = None
    bash: linux.BashRunner | None = None
    # The decoded v1 envelope of the running RunScript, SAS URL included.
    fields: dict[str, Any] | None = field(default=None, repr=False)
    # Whether a script of this run is running now, and so whether a cancel
    # records a cancelled upload attempt.
    script_running: bool = False


class Sessions:
    """All machine actions of the tenant and the tasks of the active ones."""

    def __init__(
        self,
        clock: EmulatedClock,
        library: Library,
        work_root: Path,
        *,
        run_any_script: bool,
    ) -> None:
        self.clock = clock
        self.library = library
        self.work_root = work_root
        self.run_any_script = run_any_script
        self.actions: dict[str, MachineAction] = {}
        self.uploads: list[UploadAttempt] = []
        self._runs: dict[str, _Run] = {}
        # Every unfinished run task, also of cancelled actions, for close().
        self._tasks: set[asyncio.Task[None]] = set()

    # Queries

    def get(self, action_id: str) -> MachineAction | None:
        return self.actions.get(action_id.lower())

    def newest_first(self) -> list[MachineAction]:
        return sorted(self.actions.values(), key=lambda a: a.created_at, reverse=True)

    def active_on(self, machine_id: str) -> MachineAction | None:
        for action in self.actions.values():
            if action.machine_id == machine_id and action.is_active:
                return action
        return None

    def active_count(self) -> int:
        return sum(1 for action in self.actions.values() if action.is_active)

    # Changes

    def start(
        self, action: MachineAction, device: Device, args: dict[int, str]
    ) -> None:
        """Store ``action`` and start its run, with ``args`` by command index."""
        self.actions[action.id] = action
        run = _Run(action=action, device=device, args=dict(args))
        self._runs[action.id] = run
        run.task = asyncio.get_running_loop().create_task(
            self._run(run), name=f"live-response-{action.id}"
        )
        self._tasks.add(run.task)
        run.task.add_done_callback(self._tasks.discard)

    def cancel(self, action: MachineAction, comment: str | None) -> None:
        """Cancel an active action now and kill its script if one runs."""
        now = defender_time(self.clock.utc())
        action.status = CANCELLED
        action.cancellation_requestor = REQUESTOR
        action.cancellation_comment = comment
        action.cancellation_time = now
        action.last_update_time = now
        for state in action.commands:
            if state.status == CREATED and state.start_time is not None:
                state.status = COMMAND_FAILED
                state.end_time = now
                state.errors.append("The action was cancelled")
        run = self._runs.pop(action.id, None)
        if run is not None:
            # Recorded here, not when the run task ends, so that the attempt is
            # listed before the cancel response is sent.
            if run.script_running:
                run.script_running = False
                self._record(run, "cancelled")
            self._stop_run(run)
        log.info("action %s on device %s cancelled", action.id, action.machine_id)

    def reset(self) -> None:
        self.kill_all()
        self.actions.clear()
        self.uploads.clear()

    def kill_all(self) -> None:
        """Kill every running script and cancel every run task, without waiting."""
        runs = list(self._runs.values())
        self._runs.clear()
        for run in runs:
            self._stop_run(run)

    async def close(self) -> None:
        """Kill every run and wait up to STOP_WAIT_SECONDS for the tasks to end."""
        self.kill_all()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_SECONDS)

    @staticmethod
    def _stop_run(run: _Run) -> None:
        run.args.clear()
        if run.bash is not None:
            run.bash.kill()
        if run.task is not None:
            run.task.cancel()

    # The run of one action

    async def _run(self, run: _Run) -> None:
        action = run.action
        try:
            if not await self._wait_for_device(run):
                log.info(
                    "action %s timed out: device %s was offline for %g emulated hours",
                    action.id,
                    action.machine_id,
                    QUEUE_TIMEOUT_SECONDS / 3600,
                )
                self._finish(action, TIMEOUT)
                return
            await self.clock.sleep(SESSION_START_SECONDS)
            action.status = IN_PROGRESS
            action.touch(self.clock)
            log.info("action %s on device %s in progress", action.id, action.machine_id)
            for state in action.commands:
                if not await self._run_command(run, state):
                    self._finish(action, FAILED)
                    return
            self._finish(action, SUCCEEDED)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("action %s failed inside the emulator", action.id)
            self._finish(action, FAILED)
        finally:
            run.args.clear()
            if self._runs.get(action.id) is run:
                del self._runs[action.id]

    async def _wait_for_device(self, run: _Run) -> bool:
        deadline = run.action.created_at + QUEUE_TIMEOUT_SECONDS
        while not run.device.online:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return False
            await run.device.wait_online(self.clock.wall_seconds(remaining))
        return True

    def _finish(self, action: MachineAction, status: str) -> None:
        if not action.is_active:
            return
        action.status = status
        action.touch(self.clock)
        log.info("action %s on device %s: %s", action.id, action.machine_id, status)

    async def _run_command(self, run: _Run, state: CommandState) -> bool:
        """Run one command and return whether it completed."""
        state.start_time = run.action.touch(self.clock)
        command = state.command
        if command.type == PUT_FILE:
            name = command.param("FileName") or ""
            if self.library.get(name) is None:
                return self._command_failed(
                    run, state, f"The file '{name}' is not in the live response library"
                )
            return self._command_completed(run, state)
        if command.type != RUN_SCRIPT:
            return self._command_failed(run, state, f"{command.type} is not emulated")
        run.script_running = True
        try:
            outcome = await self._run_script(run, state)
        except asyncio.CancelledError:
            if run.script_running:
                self._record(run, "cancelled")
            raise
        finally:
            run.script_running = False
        if isinstance(outcome, str):
            return self._command_failed(run, state, outcome)
        state.result = outcome
        if outcome.exit_code != 0:
            # NOTE: here a script that exits non-zero fails the command and the
            # action. What Defender does then is not documented.
            return self._command_failed(
                run, state, f"The script exited with code {outcome.exit_code}"
            )
        return self._command_completed(run, state)

    def _command_completed(self, run: _Run, state: CommandState) -> bool:
        state.status = COMPLETED
        state.end_time = run.action.touch(self.clock)
        return True

    def _command_failed(self, run: _Run, state: CommandState, error: str) -> bool:
        state.status = COMMAND_FAILED
        state.errors.append(error)
        state.end_time = run.action.touch(self.clock)
        log.info("action %s command %d failed: %s", run.action.id, state.index, error)
        return False

    async def _run_script(self, run: _Run, state: CommandState) -> ScriptResult | str:
        """Run a RunScript command and return its result, or the error message."""
        name = state.command.param("ScriptName") or ""
        script = self.library.get(name)
        if script is None:
            return f"The script '{name}' is not in the live response library"
        args = run.args.get(state.index)
        run.fields = None
        if run.device.machine.is_linux:
            return await self._run_bash(run, script, args)
        return await self._run_windows(run, script, args)

    def _wall_timeout(self) -> float:
        return max(
            self.clock.wall_seconds(SCRIPT_TIMEOUT_SECONDS), MIN_SCRIPT_WALL_SECONDS
        )

    async def _run_bash(
        self, run: _Run, script: LibraryFile, args: str | None
    ) -> ScriptResult | str:
        device = run.device
        if not self.run_any_script and script.sha256 not in _repository_hashes("*.sh"):
            self._record(run, "rejected", "script_not_allowed")
            return (
                f"The emulator runs only the repository's scripts/liveresponse/*.sh "
                f"on Linux devices, and '{script.file_name}' differs from them. Start "
                "the emulator with --defender-run-any-script to run other scripts"
            )

        prepared = linux.prepare_args(args, device)
        run.fields = prepared.fields
        url, query = _sas_parts(prepared.fields)
        host = _non_loopback_host(url)
        if host is not None:
            self._record(run, "rejected", "not_loopback")
            return _not_loopback_message(host)

        runner = linux.BashRunner(self.work_root)
        run.bash = runner
        try:
            outcome = await runner.run(
                script.content,
                script.file_name,
                prepared.argv,
                device,
                self._wall_timeout(),
            )
        except linux.ScriptTimeout:
            self._record(run, "timed_out")
            return f"The script timed out after {SCRIPT_TIMEOUT_SECONDS:g} seconds"
        except FileNotFoundError as exc:
            self._record(run, "not_run", "bash_missing")
            return f"The script could not run: {exc}"
        finally:
            run.bash = None

        def clean(text: str) -> str:
            # The script saw paths below the device's disk folder, so the
            # output gets the device's own paths back.
            return redact_text(text, url, query).replace(str(device.disk), "")

        result = ScriptResult(
            script_name=script.file_name,
            exit_code=outcome.exit_code,
            script_output=clean(outcome.stdout),
            script_errors=clean(outcome.stderr),
        )
        self._record_result(run, result.script_output)
        return result

    async def _run_windows(
        self, run: _Run, script: LibraryFile, args: str | None
    ) -> ScriptResult | str:
        if not script.file_name.lower().endswith(".ps1"):
            self._record(run, "rejected", "not_powershell")
            return (
                f"Live Response runs PowerShell scripts on Windows devices, and "
                f"'{script.file_name}' is not a .ps1 file"
            )
        if script.sha256 != _file_sha256(WINDOWS_SCRIPT):
            self._record(run, "rejected", "script_not_allowed")
            return (
                "The emulator performs only scripts/liveresponse/anyrun-upload.ps1 on "
                f"Windows devices, and '{script.file_name}' differs from it"
            )

        tokens = (args or "").split()
        payload = tokens[0] if tokens else ""
        run.fields = envelope.decode(payload)
        url, query = _sas_parts(run.fields)
        if len(tokens) > 1:
            self._record(run, "failed", "bad_argument")
            return ScriptResult(
                script_name=script.file_name,
                exit_code=1,
                script_output="",
                script_errors="The script takes one argument, but Args has "
                f"{len(tokens)} parts separated by spaces.",
            )

        log.info(
            "action %s: performing anyrun-upload.ps1 in Python for '%s' on device %s "
            "(PowerShell is not run)",
            run.action.id,
            script.file_name,
            run.device.id,
        )
        try:
            async with asyncio.timeout(self._wall_timeout()):
                outcome = await windows.run_upload_script(
                    payload, run.device, self.clock
                )
        except windows.UploadRefused as exc:
            self._record(run, "rejected", "not_loopback")
            return _not_loopback_message(str(exc))
        except TimeoutError:
            self._record(run, "timed_out")
            return f"The script timed out after {SCRIPT_TIMEOUT_SECONDS:g} seconds"

        output = redact_text(outcome.script_output(), url, query)
        result = ScriptResult(
            script_name=script.file_name,
            exit_code=outcome.exit_code,
            script_output=output,
            script_errors="",
        )
        self._record_result(run, output)
        return result

    # Upload attempts

    def _record_result(self, run: _Run, output: str) -> None:
        line = result_line(output)
        if line is None:
            self._record(run, "no_result")
            return
        self._record(
            run,
            str(line["status"]),
            _text_or_none(line.get("reason")),
            _text_or_none(line.get("source")),
        )

    def _record(
        self,
        run: _Run,
        status: str,
        reason: str | None = None,
        source: str | None = None,
    ) -> None:
        if self.actions.get(run.action.id) is not run.action:
            return  # a reset forgot the action while its run was ending
        path = (run.fields or {}).get("path")
        attempt = UploadAttempt(
            action_id=run.action.id,
            machine_id=run.device.id,
            path=path if isinstance(path, str) else None,
            status=status,
            reason=reason,
            source=source,
            time=defender_time(self.clock.utc()),
        )
        self.uploads.append(attempt)
        log.info(
            "upload attempt of action %s on device %s: %s%s",
            attempt.action_id,
            attempt.machine_id,
            status,
            f" ({reason})" if reason else "",
        )


def result_line(output: str) -> dict[str, Any] | None:
    """Return the last line of ``output`` that is a JSON object with a status."""
    for line in reversed(output.splitlines()):
        text = line.strip().strip("\x00")
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("status"), str):
            return value
    return None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _sas_parts(fields: dict[str, Any] | None) -> tuple[str, str]:
    url = (fields or {}).get("url")
    if not isinstance(url, str):
        return "", ""
    return url, url.partition("?")[2]


def _non_loopback_host(url: str) -> str | None:
    """Return the host of a SAS URL that is not on loopback, or None.

    A URL in a shape the scripts reject is let through: the script fails it
    before sending anything.
    """
    if not url:
        return None
    host = envelope.url_host(url)
    if host is None or envelope.is_loopback_host(host):
        return None
    return host


def _not_loopback_message(host: str) -> str:
    return (
        f"The emulator uploads only to loopback addresses, and the SAS URL's host is "
        f"{host}; nothing was sent"
    )


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _repository_hashes(pattern: str) -> set[str]:
    """Return the SHA-256 of each repository script, read now so that edits count."""
    return {_file_sha256(path) for path in SCRIPTS_DIR.glob(pattern) if path.is_file()}
