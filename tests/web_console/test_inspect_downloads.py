"""Pure parts of the inspector console: old downloads are pruned."""
from __future__ import annotations

import os
import time
from pathlib import Path

from web_console.inspect_console import new_file_name, prune_old_files


def test_old_downloads_are_pruned(tmp_path: Path) -> None:
    old, fresh = tmp_path / new_file_name("zip"), tmp_path / new_file_name("mp4")
    other = tmp_path / "keep-me.txt"  # not ours: never touched
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(other, (two_days_ago, two_days_ago))
    assert prune_old_files(tmp_path) == 1
    assert not old.exists() and fresh.exists() and other.exists()
