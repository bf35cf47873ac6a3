"""Validation of the POST /v1/analysis parameters.

The rules include env_os windows|linux|android|macos with per-OS env_version
and env_bitness, opt_timeout 10-660 s, and user_tags of at most 8 tags of at
most 16 characters (a-z A-Z 0-9 and -). An empty or null value counts as not
provided, because ANY.RUN's Python SDK drops such values before sending.
Booleans may be JSON booleans or the strings "true" and "false", because Logic
Apps send strings. Unknown parameters are ignored.

NOTE: the real API may accept values that are rejected here, or reject
combinations accepted here; the rules come from public SDK and integration
code, not from a specification.
"""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OBJ_TYPES = ("file", "url", "download", "rerun")
OS_VERSIONS = {
    "windows": ("7", "10", "11", "server 2025"),
    "linux": ("22.04.2", "12.2"),
    "android": ("14",),
    "macos": ("15",),
}
DEFAULT_VERSIONS = {"windows": "10", "linux": "22.04.2", "android": "14", "macos": "15"}
ENV_TYPES = ("complete", "development")
PRIVACY_TYPES = ("public", "bylink", "owner", "byteam")
AUTO_DELETE_PERIODS = ("day", "week", "2 weeks", "month")
START_FOLDERS = {
    "windows": ("desktop", "home", "downloads", "appdata", "temp", "windows", "root"),
    "linux": ("desktop", "home", "downloads", "temp"),
    "macos": ("desktop", "home", "downloads", "temp"),
}
# NOTE: the documentation lists macOS browsers only as "Safari|..."; the other two
# are a guess.
BROWSERS = {
    "windows": (
        "Microsoft Edge",
        "Internet Explorer",
        "Google Chrome",
        "Mozilla Firefox",
    ),
    "linux": ("Google Chrome", "Mozilla Firefox"),
    "macos": ("Safari", "Google Chrome", "Mozilla Firefox"),
}
DEFAULT_BROWSERS = {
    "windows": "Microsoft Edge",
    "linux": "Google Chrome",
    "macos": "Safari",
}
DEFAULT_TIMEOUTS = {"file": 240, "url": 120, "download": 120}
MIN_TIMEOUT, MAX_TIMEOUT = 10, 660
MIN_URL_LENGTH, MAX_URL_LENGTH = 5, 512
MAX_TAGS, MAX_TAG_LENGTH = 8, 16

# Boolean options and their defaults.
BOOLEAN_OPTIONS = {
    "opt_network_connect": True,
    "opt_network_fakenet": False,
    "opt_network_tor": False,
    "opt_network_mitm": False,
    "opt_network_residential_proxy": False,
    "opt_kernel_heavyevasion": False,
    "opt_automated_interactivity": False,
    "opt_privacy_hidesource": False,
    "obj_ext_extension": True,
    "obj_ext_elevateprompt": False,
    "obj_force_elevation": False,
    "auto_confirm_uac": False,
    "run_as_root": False,
}
# Boolean options that may be true only on some operating systems.
OS_ONLY_OPTIONS = {
    "opt_kernel_heavyevasion": ("windows", "linux"),
    "obj_force_elevation": ("windows",),
    "obj_ext_elevateprompt": ("windows",),
    "auto_confirm_uac": ("windows",),
    "run_as_root": ("linux",),
}

_TAG = re.compile(r"^[A-Za-z0-9-]+$")
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_COUNTRY_NAME = re.compile(r"^[A-Z][A-Za-z]+( [A-Za-z]+)*$")
_COUNTRY_CODE = re.compile(r"^[A-Za-z]{2}$")
_INTEGER = re.compile(r"^[+-]?\d+$")


class ParameterError(ValueError):
    """A submission parameter is missing or invalid; str() is ``<field>: <problem>``."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name


@dataclass(frozen=True)
class Submission:
    """A validated submission: the object and its options under their API names."""

    obj_type: str
    obj_url: str | None
    rerun_uuid: str | None
    options: dict[str, Any]
    user_tags: tuple[str, ...] = field(default=())


def validate_submission(
    raw: Mapping[str, Any],
    *,
    has_file: bool,
    base_options: Mapping[str, Any] | None = None,
) -> Submission:
    """Validate raw request parameters and fill in the defaults.

    ``has_file`` is True when a multipart ``file`` part came with the request.
    ``base_options`` replace the defaults, which a rerun uses to inherit the
    options of the task it repeats. Raises ParameterError naming the first bad field.
    """
    provided = {name: value for name, value in raw.items() if value not in (None, "")}
    defaults = dict(base_options or {})

    obj_type = _choice(provided, "obj_type", OBJ_TYPES, "file" if has_file else None)
    if obj_type is None:
        raise ParameterError("obj_type", f"required, one of {_list(OBJ_TYPES)}")

    obj_url, rerun_uuid = _validate_object(provided, obj_type, has_file)

    options: dict[str, Any] = {}
    env_os = _choice(
        provided, "env_os", tuple(OS_VERSIONS), defaults.get("env_os", "windows")
    )
    options["env_os"] = env_os
    options.update(_validate_environment(provided, env_os, defaults))

    timeout_default = defaults.get("opt_timeout", DEFAULT_TIMEOUTS.get(obj_type, 120))
    options["opt_timeout"] = _integer(
        provided,
        "opt_timeout",
        MIN_TIMEOUT,
        MAX_TIMEOUT,
        timeout_default,
        unit=" seconds",
    )
    options["opt_privacy_type"] = _choice(
        provided,
        "opt_privacy_type",
        PRIVACY_TYPES,
        defaults.get("opt_privacy_type", "bylink"),
    )
    for name, default in BOOLEAN_OPTIONS.items():
        options[name] = _boolean(provided, name, defaults.get(name, default))
    for name, systems in OS_ONLY_OPTIONS.items():
        if options[name] and env_os not in systems:
            raise ParameterError(name, f"is available only for {_list(systems)}")
    if options["obj_force_elevation"] and obj_type != "file":
        raise ParameterError("obj_force_elevation", "is available only for files")

    for name in ("opt_network_geo", "opt_network_residential_proxy_geo"):
        options[name] = _geo(provided, name, defaults.get(name, "fastest"))

    options["opt_auto_delete_after"] = _choice(
        provided,
        "opt_auto_delete_after",
        AUTO_DELETE_PERIODS,
        defaults.get("opt_auto_delete_after"),
    )
    options.update(_validate_object_extensions(provided, env_os, obj_type, defaults))

    user_tags = _user_tags(provided.get("user_tags"))
    return Submission(obj_type, obj_url, rerun_uuid, options, user_tags)


def _validate_object(
    provided: Mapping[str, Any], obj_type: str, has_file: bool
) -> tuple[str | None, str | None]:
    if obj_type == "file":
        if not has_file:
            raise ParameterError(
                "file",
                "required for obj_type file: send it as the multipart/form-data "
                "field 'file'",
            )
        return None, None
    if has_file:
        raise ParameterError("file", f"is not allowed with obj_type {obj_type}")
    if obj_type == "rerun":
        rerun = _text(provided, "task_rerun_uuid")
        if rerun is None:
            raise ParameterError("task_rerun_uuid", "required for obj_type rerun")
        try:
            return None, str(uuid.UUID(rerun))
        except ValueError:
            raise ParameterError("task_rerun_uuid", "must be a task UUID") from None
    obj_url = _text(provided, "obj_url")
    if obj_url is None:
        raise ParameterError("obj_url", f"required for obj_type {obj_type}")
    if not MIN_URL_LENGTH <= len(obj_url) <= MAX_URL_LENGTH:
        raise ParameterError(
            "obj_url",
            f"must be {MIN_URL_LENGTH} to {MAX_URL_LENGTH} characters long, "
            f"got {len(obj_url)}",
        )
    return obj_url, None


def _validate_environment(
    provided: Mapping[str, Any], env_os: str, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    versions = OS_VERSIONS[env_os]
    default_version = defaults.get("env_version", DEFAULT_VERSIONS[env_os])
    if default_version not in versions:
        default_version = DEFAULT_VERSIONS[env_os]
    version = _choice(
        provided, "env_version", versions, default_version, context=env_os
    )

    default_bitness = str(defaults.get("env_bitness", 64))
    bitness = int(_choice(provided, "env_bitness", ("32", "64"), default_bitness))
    if bitness == 32 and (env_os != "windows" or version in ("11", "server 2025")):
        raise ParameterError(
            "env_bitness", f"must be 64 for {env_os} {version}, got 32"
        )

    env_type = _choice(
        provided, "env_type", ENV_TYPES, defaults.get("env_type", "complete")
    )
    if env_type == "development" and (
        env_os != "windows" or version != "10" or bitness != 64
    ):
        raise ParameterError(
            "env_type", "development is available only for windows 10 64-bit"
        )

    locale = _text(provided, "env_locale")
    if locale is None:
        locale = defaults.get("env_locale", "en-US")
    elif not (_LOCALE.match(locale) or _COUNTRY_NAME.match(locale)):
        raise ParameterError(
            "env_locale",
            f"must be a locale such as en-US or a country name, got {locale!r}",
        )
    return {
        "env_version": version,
        "env_bitness": bitness,
        "env_type": env_type,
        "env_locale": locale,
    }


def _validate_object_extensions(
    provided: Mapping[str, Any],
    env_os: str,
    obj_type: str,
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    folders = START_FOLDERS.get(env_os, ())
    folder_default = defaults.get("obj_ext_startfolder", "temp" if folders else None)
    if "obj_ext_startfolder" in provided and not folders:
        raise ParameterError("obj_ext_startfolder", f"is not available for {env_os}")
    start_folder = _choice(
        provided, "obj_ext_startfolder", folders, folder_default, context=env_os
    )

    browsers = BROWSERS.get(env_os, ())
    if "obj_ext_browser" in provided and not browsers:
        raise ParameterError("obj_ext_browser", f"is not available for {env_os}")
    browser_default = defaults.get("obj_ext_browser")
    if browser_default not in browsers:
        browser_default = DEFAULT_BROWSERS.get(env_os) if obj_type != "file" else None
    browser = _choice(
        provided, "obj_ext_browser", browsers, browser_default, context=env_os
    )

    cmd = _text(provided, "obj_ext_cmd")
    if cmd is not None and not 2 <= len(cmd) <= 256:
        raise ParameterError(
            "obj_ext_cmd", f"must be 2 to 256 characters long, got {len(cmd)}"
        )
    user_agent = _text(provided, "obj_ext_useragent")
    if user_agent is not None and len(user_agent) > 256:
        raise ParameterError(
            "obj_ext_useragent",
            f"must be at most 256 characters long, got {len(user_agent)}",
        )
    return {
        "obj_ext_startfolder": start_folder,
        "obj_ext_browser": browser,
        "obj_ext_cmd": cmd if cmd is not None else defaults.get("obj_ext_cmd"),
        "obj_ext_useragent": user_agent,
    }


def _user_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, str):
        raise ParameterError("user_tags", "must be a comma-separated string of tags")
    tags = value.split(",")
    if len(tags) > MAX_TAGS:
        raise ParameterError(
            "user_tags", f"at most {MAX_TAGS} tags are allowed, got {len(tags)}"
        )
    for tag in tags:
        if not tag:
            raise ParameterError("user_tags", f"contains an empty tag in {value!r}")
        if len(tag) > MAX_TAG_LENGTH:
            raise ParameterError(
                "user_tags",
                f"tag {tag!r} is longer than {MAX_TAG_LENGTH} characters",
            )
        if not _TAG.match(tag):
            raise ParameterError(
                "user_tags",
                f"tag {tag!r} may contain only a-z, A-Z, 0-9 and -",
            )
    return tuple(tags)


def _text(provided: Mapping[str, Any], name: str) -> str | None:
    value = provided.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ParameterError(name, f"must be a string, got {type(value).__name__}")
    return str(value)


def _choice(
    provided: Mapping[str, Any],
    name: str,
    allowed: tuple[str, ...],
    default: Any,
    *,
    context: str | None = None,
) -> Any:
    value = _text(provided, name)
    if value is None:
        return default
    if value not in allowed:
        where = f" for {context}" if context else ""
        hint = ""
        if name == "env_os" and value in ("ubuntu", "debian"):
            hint = (
                " (use env_os linux with env_version 22.04.2 for Ubuntu or 12.2 "
                "for Debian)"
            )
        raise ParameterError(
            name, f"must be one of {_list(allowed)}{where}, got {value!r}{hint}"
        )
    return value


def _integer(
    provided: Mapping[str, Any],
    name: str,
    minimum: int,
    maximum: int,
    default: Any,
    *,
    unit: str = "",
) -> int:
    value = provided.get(name)
    if value is None:
        return default
    problem = f"must be an integer from {minimum} to {maximum}{unit}, got {value!r}"
    if isinstance(value, bool):
        raise ParameterError(name, problem)
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise ParameterError(name, problem)
    return value


def _boolean(provided: Mapping[str, Any], name: str, default: bool) -> bool:
    value = provided.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ParameterError(name, f"must be true or false, got {value!r}")


def _geo(provided: Mapping[str, Any], name: str, default: str) -> str:
    value = _text(provided, name)
    if value is None:
        return default
    if value == "fastest":
        return value
    if _COUNTRY_CODE.match(value):
        return value.upper()
    raise ParameterError(
        name, f"must be fastest or a two-letter country code such as DE, got {value!r}"
    )


def _list(values: tuple[str, ...]) -> str:
    return ", ".join(values)
