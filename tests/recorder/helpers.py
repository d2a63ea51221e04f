"""Small helpers shared by the recorder tests."""

from __future__ import annotations

from pathlib import Path

from recorder.service import RecorderConfig


def recorder_config(var: Path, **overrides: object) -> RecorderConfig:
    return RecorderConfig(recordings_dir=var / "recordings", keys_dir=var / "keys", **overrides)  # type: ignore[arg-type]
