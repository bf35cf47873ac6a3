"""Devices at run time: online state and the folders that stand in for their disks.

Each device gets a folder under the emulator's data folder:

- ``disk/``: the device's on-disk files. A Linux path ``/a/b`` is
  ``disk/a/b``. A Windows path ``C:\\A\\B`` is ``disk/c/a/b``, lower-cased, so
  that lookups ignore case as Windows does.
- ``quarantine/``: the Defender quarantine. For Linux it is the folder of the
  ``mdatp`` stand-in in tests/scripts, which keeps the quarantined copy of path
  P at ``quarantine/P``. The bash script sees paths rewritten onto ``disk/``, so
  P is the full path of the file inside ``disk/``. For Windows it is laid out
  like ``disk/``.
- ``mdatp.log``: the calls that the ``mdatp`` stand-in recorded.

Files added at run time (see added_files.py) live in the same folders until the
next reset.
"""

import asyncio
import logging
import posixpath
import re
import shutil
from pathlib import Path

from emulators.clock import EmulatedClock
from emulators.defender.catalogue import DeviceFile, Machine

log = logging.getLogger(__name__)

_WINDOWS_DRIVE = re.compile(r"^([A-Za-z]):$")


class FileConflictError(ValueError):
    """A file to add clashes with a file or folder that the device already has."""


class Device:
    """One catalogue machine at run time, with the files added since the last reset."""

    def __init__(self, machine: Machine, base: Path, clock: EmulatedClock) -> None:
        self.machine = machine
        self.clock = clock
        self.folder = base / machine.id
        self.disk = self.folder / "disk"
        self.quarantine = self.folder / "quarantine"
        self.mdatp_log = self.folder / "mdatp.log"
        self.online = machine.online
        self.added_files: list[DeviceFile] = []
        # Emulated seconds (relative to the clock's start) of the last change
        # to offline; a catalogue device that starts offline went offline
        # ``offline_hours`` before the start.
        self.offline_since = -machine.offline_hours * 3600.0
        self._online_event = asyncio.Event()
        if self.online:
            self._online_event.set()

    @property
    def id(self) -> str:
        return self.machine.id

    @property
    def files(self) -> list[DeviceFile]:
        """Return the catalogue files, then the files added at run time."""
        return [*self.machine.files, *self.added_files]

    def materialise(self) -> None:
        """Recreate the device's folders with the catalogue files, and nothing else."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.disk.mkdir(parents=True)
        self.quarantine.mkdir()
        self.mdatp_log.touch()
        for file in self.machine.files:
            target = self._stored_path(file)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.content())

    def reset(self) -> None:
        self.added_files.clear()
        self.set_online(self.machine.online)
        self.offline_since = -self.machine.offline_hours * 3600.0
        self.materialise()

    def set_online(self, online: bool) -> None:
        if online == self.online:
            return
        self.online = online
        if online:
            self._online_event.set()
        else:
            self.offline_since = self.clock.now()
            self._online_event.clear()
        log.info("device %s is now %s", self.id, "online" if online else "offline")

    def add_file(self, file: DeviceFile, content: bytes) -> None:
        """Write a new file into the device's folder and list it with its files.

        Raises FileConflictError when the device has a file with the same path
        (ignoring case on Windows), or when the path or one of its parent
        folders is taken by a folder or file.
        """
        key = self._path_key(file.path)
        if any(self._path_key(known.path) == key for known in self.files):
            raise FileConflictError(f"device {self.id} already has a file {file.path}")
        target = self._stored_path(file)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as stream:
                stream.write(content)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise FileConflictError(
                f"the path {file.path} or one of its parent folders is already taken "
                f"by a file or folder on device {self.id}"
            ) from None
        self.added_files.append(file)
        log.info(
            "device %s: added %s file %s (%d bytes)",
            self.id,
            file.location,
            file.path,
            file.size,
        )

    def _path_key(self, path: str) -> str:
        if self.machine.is_linux:
            return path
        segments = windows_segments(path)
        return "\\".join(segments) if segments is not None else path.lower()

    async def wait_online(self, wall_timeout: float) -> bool:
        """Wait up to ``wall_timeout`` wall seconds for the device to be online."""
        try:
            await asyncio.wait_for(self._online_event.wait(), max(0.0, wall_timeout))
        except TimeoutError:
            return False
        return True

    # Linux paths

    def linux_disk_path(self, path: str) -> str:
        """Return the absolute path ``path`` rewritten onto the device's disk folder.

        ``..`` is resolved without looking at the file system, so the result
        stays inside ``disk/`` whatever ``path`` contains.
        """
        normal = posixpath.normpath(path)
        normal = "/" + normal.lstrip("/")
        return str(self.disk) + normal if normal != "/" else str(self.disk)

    # Windows paths

    def windows_disk_path(self, path: str) -> Path | None:
        """Return the disk-folder path of a Windows path, or None for UNC paths."""
        segments = windows_segments(path)
        return None if segments is None else self.disk.joinpath(*segments)

    def windows_quarantine_path(self, path: str) -> Path | None:
        segments = windows_segments(path)
        return None if segments is None else self.quarantine.joinpath(*segments)

    def quarantined_by_threat(self, threat_name: str) -> list[Path]:
        """Return the quarantined files of a threat (Windows devices)."""
        found = []
        for file in self.files:
            if file.location != "quarantine" or file.threat_name is None:
                continue
            if file.threat_name.lower() == threat_name.lower():
                found.append(self._stored_path(file))
        return found

    def _stored_path(self, file: DeviceFile) -> Path:
        if self.machine.is_linux:
            on_disk = self.linux_disk_path(file.path)
            if file.location == "disk":
                return Path(on_disk)
            return Path(str(self.quarantine) + on_disk)
        if file.location == "disk":
            stored = self.windows_disk_path(file.path)
        else:
            stored = self.windows_quarantine_path(file.path)
        if stored is None:
            raise ValueError(f"catalogue file {file.path} is not a local Windows path")
        return stored


def windows_segments(path: str) -> list[str] | None:
    """Split ``C:\\dir\\file`` into lower-case ``["c", "dir", "file"]``.

    ``.`` and ``..`` are resolved lexically and never climb above the drive.
    UNC paths and paths without a drive letter give None.
    """
    parts = re.split(r"[\\/]+", path)
    drive = _WINDOWS_DRIVE.match(parts[0]) if parts else None
    if drive is None:
        return None
    segments = [drive.group(1).lower()]
    for part in parts[1:]:
        if part in ("", "."):
            continue
        if part == "..":
            if len(segments) > 1:
                segments.pop()
            continue
        segments.append(part.lower())
    return segments
