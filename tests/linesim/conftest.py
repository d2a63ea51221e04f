"""The ``linesim`` fixture: emulated leased lines (see tests/linesim/line.py), always torn down.

Calls through a line run their rooms at 15 fps (``room_settings`` for the shared ``conferences``
fixture in tests/conftest.py).
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from mcu.room import RoomSettings
from tests.linesim.line import Line, LineUnavailable, Profile, open_line

OpenLine = Callable[..., Line]


@pytest.fixture
def linesim() -> Iterator[OpenLine]:
    """``linesim("768k_20ms")`` (a profile name or a Profile) gives a set-up :class:`Line`.

    A missing part (root, iproute2, iptables, sch_tbf, nfnetlink_queue) fails the test naming it.
    Every line is closed at teardown, also when the test failed, and its namespace must be gone.
    """
    stack: list[tuple[Line, object]] = []

    def make(profile: Profile | str, seed: int = 1) -> Line:
        manager = open_line(profile, seed)
        try:
            line = manager.__enter__()
        except LineUnavailable as exc:
            pytest.fail(f"the line emulator cannot run here: {exc}")
        stack.append((line, manager))
        return line

    yield make
    for line, manager in reversed(stack):
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert line.namespace not in names, f"{line.namespace} was left behind"


@pytest.fixture
def room_settings() -> RoomSettings:
    return RoomSettings(fps=15)
