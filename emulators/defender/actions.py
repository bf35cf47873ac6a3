"""Machine actions of type LiveResponse and their commands.

Action statuses: Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled.
Command statuses: Created, Completed, Failed (the documented values).
"""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulators.clock import EmulatedClock
from emulators.defender.commands import RUN_SCRIPT, Command

PENDING = "Pending"
IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TIMEOUT = "TimeOut"
CANCELLED = "Cancelled"
ACTIVE_STATUSES = (PENDING, IN_PROGRESS)
ACTION_STATUSES = (PENDING, IN_PROGRESS, SUCCEEDED, FAILED, TIMEOUT, CANCELLED)

CREATED = "Created"
COMPLETED = "Completed"
COMMAND_FAILED = "Failed"

# NOTE: an app token's requestor is shown as this name; what Defender shows for
# actions that an application started is not documented.
REQUESTOR = "Emulated API client"


def defender_time(moment: datetime) -> str:
    """Format a time as Defender does: seven fractional digits and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass(frozen=True)
class ScriptResult:
    """The downloadable result of one RunScript command."""

    script_name: str
    exit_code: int
    script_output: str
    script_errors: str

    def to_json(self) -> dict[str, Any]:
        return {
            "script_name": self.script_name,
            "exit_code": self.exit_code,
            "script_output": self.script_output,
            "script_errors": self.script_errors,
        }


@dataclass
class CommandState:
    index: int
    command: Command
    status: str = CREATED
    start_time: str | None = None
    end_time: str | None = None
    errors: list[str] = field(default_factory=list)
    result: ScriptResult | None = None

    @property
    def script_name(self) -> str | None:
        if self.command.type != RUN_SCRIPT:
            return None
        return self.command.param("ScriptName")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "commandStatus": self.status,
            "errors": list(self.errors),
            "command": self.command.to_json(),
        }


@dataclass
class MachineAction:
    id: str
    machine_id: str
    computer_dns_name: str
    comment: str | None
    created_at: float
    creation_time: str
    last_update_time: str
    commands: list[CommandState]
    status: str = PENDING
    cancellation_requestor: str | None = None
    cancellation_comment: str | None = None
    cancellation_time: str | None = None

    @classmethod
    def create(
        cls,
        clock: EmulatedClock,
        machine_id: str,
        computer_dns_name: str,
        commands: tuple[Command, ...],
        comment: str | None,
    ) -> "MachineAction":
        now = clock.now()
        text = defender_time(clock.utc(now))
        return cls(
            id=str(uuid.uuid4()),
            machine_id=machine_id,
            computer_dns_name=computer_dns_name,
            comment=comment,
            created_at=now,
            creation_time=text,
            last_update_time=text,
            commands=[
                CommandState(index=index, command=command)
                for index, command in enumerate(commands)
            ],
        )

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def touch(self, clock: EmulatedClock) -> str:
        self.last_update_time = defender_time(clock.utc())
        return self.last_update_time

    def to_json(self, context: str) -> dict[str, Any]:
        return {
            "@odata.context": context,
            "id": self.id,
            "type": "LiveResponse",
            "scope": None,
            "requestor": REQUESTOR,
            "requestorComment": self.comment,
            "status": self.status,
            "machineId": self.machine_id,
            "computerDnsName": self.computer_dns_name,
            "creationDateTimeUtc": self.creation_time,
            "lastUpdateDateTimeUtc": self.last_update_time,
            "cancellationRequestor": self.cancellation_requestor,
            "cancellationComment": self.cancellation_comment,
            "cancellationDateTimeUtc": self.cancellation_time,
            "errorHResult": 0,
            "relatedFileInfo": None,
            "commands": [state.to_json() for state in self.commands],
        }


@dataclass(frozen=True)
class UploadAttempt:
    """One run of an upload script, for the state route; it never contains the URL."""

    action_id: str
    machine_id: str
    path: str | None
    status: str
    reason: str | None
    source: str | None
    time: str

    def to_json(self) -> dict[str, Any]:
        return {
            "actionId": self.action_id,
            "machineId": self.machine_id,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "source": self.source,
            "time": self.time,
        }
