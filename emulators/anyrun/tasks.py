"""Emulated analysis tasks, their progress over emulated time, and the plan limits."""

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulators.anyrun.catalogue import Catalogue, Profile, stable_digest
from emulators.anyrun.params import Submission
from emulators.clock import EmulatedClock

STATUS_RUNNING_MIN = 50
STATUS_RUNNING_MAX = 99
STATUS_COMPLETED = 100
STATUS_FAILED = -1


@dataclass(frozen=True)
class UploadedFile:
    """A submitted file: its name, size, hashes and first bytes, never its content."""

    filename: str
    size: int
    md5: str
    sha1: str
    sha256: str
    head: bytes


@dataclass(frozen=True)
class Task:
    """One analysis. Its status follows from the emulated time since its creation.

    A task runs for ``duration`` emulated seconds (its opt_timeout), then completes,
    unless its profile makes it fail earlier.
    """

    uuid: str
    obj_type: str
    obj_url: str | None
    file: UploadedFile | None
    options: dict[str, Any]
    user_tags: tuple[str, ...]
    profile: Profile
    created_at: float
    created_utc: datetime
    duration: int

    @property
    def fails(self) -> bool:
        return self.profile.fail_after_seconds is not None

    @property
    def end_seconds(self) -> float:
        """Emulated seconds from creation until the task completes or fails."""
        if self.profile.fail_after_seconds is not None:
            return min(self.duration, self.profile.fail_after_seconds)
        return self.duration

    @property
    def name(self) -> str:
        if self.file is not None:
            return self.file.filename
        return self.obj_url or ""

    def elapsed(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def is_finished(self, now: float) -> bool:
        return self.elapsed(now) >= self.end_seconds

    def is_completed(self, now: float) -> bool:
        return self.is_finished(now) and not self.fails

    def is_failed(self, now: float) -> bool:
        return self.is_finished(now) and self.fails

    def status(self, now: float) -> int:
        """Return the monitor status: 50-99 running, 100 completed, -1 failed."""
        if self.is_finished(now):
            return STATUS_FAILED if self.fails else STATUS_COMPLETED
        span = STATUS_RUNNING_MAX - STATUS_RUNNING_MIN
        progress = int(self.elapsed(now) / self.duration * span)
        return STATUS_RUNNING_MIN + min(span, progress)

    def remaining(self, now: float) -> int:
        """Return the emulated seconds left until the planned end of the analysis."""
        if self.is_finished(now):
            return 0
        return max(0, math.ceil(self.duration - self.elapsed(now)))

    def verdict_known(self, now: float) -> bool:
        """Tell whether events show the verdict: from half-time on, if not failing."""
        return not self.fails and self.elapsed(now) >= self.duration / 2

    def hashes(self) -> dict[str, str]:
        if self.file is not None:
            return {
                "md5": self.file.md5,
                "sha1": self.file.sha1,
                "sha256": self.file.sha256,
                "ssdeep": fake_ssdeep(self.file.sha256, self.file.size),
            }
        return url_hashes(self.obj_url or "")


def url_hashes(url: str) -> dict[str, str]:
    """Return hashes of the URL string, used as the main-object hashes of URL tasks."""
    data = url.encode()
    sha256 = hashlib.sha256(data).hexdigest()
    return {
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        "sha256": sha256,
        "ssdeep": fake_ssdeep(sha256, len(data)),
    }


_SSDEEP_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def fake_ssdeep(sha256: str, size: int) -> str:
    """Return a stable string in ssdeep's format.

    NOTE: it is derived from the SHA-256, not computed with ssdeep, so similar
    files do not get similar values.
    """
    block = 3
    while block * 64 < size:
        block *= 2
    digest = stable_digest("ssdeep", sha256)
    first = "".join(_SSDEEP_ALPHABET[b % 64] for b in digest[:20])
    second = "".join(_SSDEEP_ALPHABET[b % 64] for b in digest[20:30])
    return f"{block}:{first}:{second}"


class LimitError(Exception):
    """A submission exceeds the plan's parallel limit or daily quota."""


class TaskStore:
    """All tasks of the one emulated API key, in creation order, and its plan limits.

    ``parallel_limit`` and ``daily_quota`` of -1 mean unlimited. The daily quota
    counts submissions per emulated UTC calendar day.
    """

    def __init__(
        self,
        clock: EmulatedClock,
        catalogue: Catalogue,
        *,
        parallel_limit: int,
        daily_quota: int,
    ) -> None:
        self.clock = clock
        self.catalogue = catalogue
        self.parallel_limit = parallel_limit
        self.daily_quota = daily_quota
        self._tasks: dict[str, Task] = {}

    def reset(self, *, parallel_limit: int, daily_quota: int) -> None:
        self._tasks.clear()
        self.parallel_limit = parallel_limit
        self.daily_quota = daily_quota

    def get(self, task_uuid: str) -> Task | None:
        return self._tasks.get(task_uuid.lower())

    def all(self) -> list[Task]:
        return list(self._tasks.values())

    def running_count(self, now: float) -> int:
        return sum(1 for task in self._tasks.values() if not task.is_finished(now))

    def available_parallels(self, now: float) -> int:
        if self.parallel_limit < 0:
            return -1
        return max(0, self.parallel_limit - self.running_count(now))

    def submissions_today(self, now: float) -> int:
        today = self.clock.utc(now).date()
        return sum(
            1 for task in self._tasks.values() if task.created_utc.date() == today
        )

    def check_limits(self, now: float) -> None:
        """Raise LimitError if a new submission would exceed a limit now."""
        if 0 <= self.parallel_limit <= self.running_count(now):
            raise LimitError("Limits exceeded")
        if 0 <= self.daily_quota <= self.submissions_today(now):
            raise LimitError(
                f"Limits exceeded: the daily API quota of {self.daily_quota} "
                "analyses is used up"
            )

    def create(self, submission: Submission, file: UploadedFile | None) -> Task:
        """Create a task for a validated submission, raising LimitError past a limit.

        A rerun must name an existing task (the caller checks); it repeats that
        task's object.
        """
        now = self.clock.now()
        self.check_limits(now)
        obj_type, obj_url = submission.obj_type, submission.obj_url
        if submission.rerun_uuid is not None:
            original = self.get(submission.rerun_uuid)
            assert original is not None
            obj_type, obj_url, file = original.obj_type, original.obj_url, original.file
        if file is not None:
            profile = self.catalogue.for_file(file.sha256)
        else:
            profile = self.catalogue.for_url(obj_url or "")
        task = Task(
            uuid=str(uuid.uuid4()),
            obj_type=obj_type,
            obj_url=obj_url,
            file=file,
            options=dict(submission.options),
            user_tags=submission.user_tags,
            profile=profile,
            created_at=now,
            created_utc=self.clock.utc(now),
            duration=submission.options["opt_timeout"],
        )
        self._tasks[task.uuid] = task
        return task

    def history(self, skip: int, limit: int) -> list[Task]:
        newest_first = list(reversed(self._tasks.values()))
        return newest_first[skip : skip + limit]
