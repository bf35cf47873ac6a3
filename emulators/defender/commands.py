"""Validation of POST /api/machines/{id}/runliveresponse bodies.

The body is ``{"Commands": [{"type", "params": [{"key", "value"}]}], "Comment"}``
with case-sensitive names, as the Defender API documents for all bodies.
Commands run in the order PutFile, RunScript, GetFile, each any number of
times. Parameters: PutFile ``FileName``; RunScript ``ScriptName`` and the
optional ``Args``; GetFile ``Path``.
"""

from dataclasses import dataclass
from typing import Any

from emulators.defender.errors import DefenderError

PUT_FILE = "PutFile"
RUN_SCRIPT = "RunScript"
GET_FILE = "GetFile"
COMMAND_ORDER = (PUT_FILE, RUN_SCRIPT, GET_FILE)
# Parameter names per command type, mapped to whether they are required.
COMMAND_PARAMS: dict[str, dict[str, bool]] = {
    PUT_FILE: {"FileName": True},
    RUN_SCRIPT: {"ScriptName": True, "Args": False},
    GET_FILE: {"Path": True},
}
# NOTE: Defender documents that it rejects shell metacharacters in Args but
# not which ones; these are the ones the Live Response scripts name.
ARGS_METACHARACTERS = "&;|$()"


@dataclass(frozen=True)
class Command:
    type: str
    params: tuple[tuple[str, str], ...]

    def param(self, key: str) -> str | None:
        for name, value in self.params:
            if name == key:
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "params": [{"key": key, "value": value} for key, value in self.params],
        }


@dataclass(frozen=True)
class LiveResponseRequest:
    commands: tuple[Command, ...]
    comment: str | None


def _invalid(message: str) -> DefenderError:
    return DefenderError(400, message, "InvalidRequestBody")


def parse_live_response(body: Any) -> LiveResponseRequest:
    """Check a runliveresponse body; raise DefenderError naming the first problem."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object")
    unknown = sorted(set(body) - {"Commands", "Comment"})
    if unknown:
        raise _invalid(
            f"Unknown properties {unknown}; the body has 'Commands' and 'Comment' "
            "(names are case-sensitive)"
        )
    comment = body.get("Comment")
    if comment is not None and not isinstance(comment, str):
        raise _invalid("Comment must be a string")
    raw_commands = body.get("Commands")
    if not isinstance(raw_commands, list) or not raw_commands:
        raise _invalid("Commands is required: a non-empty array of commands")
    commands = tuple(
        _parse_command(index, item) for index, item in enumerate(raw_commands)
    )
    _check_order(commands)
    return LiveResponseRequest(commands=commands, comment=comment)


def _parse_command(index: int, item: Any) -> Command:
    where = f"Commands[{index}]"
    if not isinstance(item, dict):
        raise _invalid(f"{where} must be an object with 'type' and 'params'")
    unknown = sorted(set(item) - {"type", "params"})
    if unknown:
        raise _invalid(
            f"{where} has unknown properties {unknown}; a command has 'type' and "
            "'params' (names are case-sensitive)"
        )
    command_type = item.get("type")
    if command_type not in COMMAND_PARAMS:
        raise _invalid(
            f"{where}.type must be one of {', '.join(COMMAND_ORDER)} "
            f"(case-sensitive), got {_short(command_type)}"
        )
    raw_params = item.get("params")
    if not isinstance(raw_params, list):
        raise _invalid(f"{where}.params is required: an array of key/value objects")
    allowed = COMMAND_PARAMS[command_type]
    params: list[tuple[str, str]] = []
    for position, param in enumerate(raw_params):
        params.append(_parse_param(f"{where}.params[{position}]", param, allowed))
    keys = [key for key, _ in params]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise _invalid(f"{where} repeats the parameters {duplicates}")
    for key, required in allowed.items():
        if required and key not in keys:
            raise _invalid(f"{where} ({command_type}) is missing the parameter '{key}'")
    command = Command(type=command_type, params=tuple(params))
    args = command.param("Args")
    if args is not None:
        _check_args(where, args)
    return command


def _parse_param(where: str, param: Any, allowed: dict[str, bool]) -> tuple[str, str]:
    if not isinstance(param, dict) or set(param) != {"key", "value"}:
        raise _invalid(
            f"{where} must be an object with exactly 'key' and 'value' (case-sensitive)"
        )
    key, value = param["key"], param["value"]
    if key not in allowed:
        raise _invalid(
            f"{where}.key must be one of {sorted(allowed)} (case-sensitive), "
            f"got {_short(key)}"
        )
    if not isinstance(value, str):
        raise _invalid(f"{where}.value ({key}) must be a string")
    if key != "Args" and not value.strip():
        raise _invalid(f"{where}.value ({key}) must not be empty")
    return key, value


def _check_args(where: str, args: str) -> None:
    """Reject shell metacharacters without quoting Args, which may hold a SAS URL."""
    found = [char for char in ARGS_METACHARACTERS if char in args]
    if found:
        listed = " ".join(found)
        raise DefenderError(
            400,
            f"{where}: Args contains characters that live response does not allow "
            f"({listed}). Encode the arguments, for example as base64url.",
            "InvalidInput",
        )


def _check_order(commands: tuple[Command, ...]) -> None:
    rank = 0
    for index, command in enumerate(commands):
        current = COMMAND_ORDER.index(command.type)
        if current < rank:
            raise _invalid(
                f"Commands[{index}] ({command.type}) comes after "
                f"{COMMAND_ORDER[rank]}; commands must be in the order "
                f"{' -> '.join(COMMAND_ORDER)}"
            )
        rank = current


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
