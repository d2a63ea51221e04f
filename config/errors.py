"""Configuration errors that name the file, the line and the field."""
from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError


class ConfigError(ValueError):
    """A configuration file that cannot be used. `str()` is meant for the operator."""

    def __init__(self, path: Path | str | None, problems: Sequence[str]) -> None:
        self.path = str(path) if path else "<settings>"
        self.problems = list(problems)
        super().__init__("\n".join(f"{self.path}:{p}" for p in self.problems))


def locate_line(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort line number (1-based) of the TOML key at `loc`, e.g. ("http", "port").

    tomllib reports no positions for values, so we look for the table header of the path
    and then the key below it. Array-of-tables indices ([[units]] number k) are honoured.
    """
    lines = text.splitlines()
    keys = [k for k in loc if isinstance(k, str)]
    if not keys:
        return None
    start = 0
    table_parts: list[str] = []
    index_iter = iter(k for k in loc if isinstance(k, int))
    for i, key in enumerate(loc):
        if isinstance(key, int):
            continue
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        table_parts.append(key)
        if isinstance(nxt, int):  # array of tables: find the (nxt+1)-th [[a.b]] header
            wanted = next(index_iter, 0)
            header = re.compile(r"^\s*\[\[\s*" + re.escape(".".join(table_parts)) + r"\s*\]\]")
            count = -1
            for n in range(start, len(lines)):
                if header.match(lines[n]):
                    count += 1
                    if count == wanted:
                        start = n + 1
                        break
            continue
    if len(keys) > 1 and start == 0:
        table = re.compile(r"^\s*\[\s*" + re.escape(".".join(keys[:-1])) + r"\s*\]")
        for n, line in enumerate(lines):
            if table.match(line):
                start = n + 1
                break
    key_re = re.compile(r"^\s*" + re.escape(keys[-1]) + r"\s*=")
    for n in range(start, len(lines)):
        if n > start and lines[n].lstrip().startswith("[") and not key_re.match(lines[n]):
            break
        if key_re.match(lines[n]):
            return n + 1
    # The field may be a table of its own ([sip.accounts]): point at its header.
    header = re.compile(r"^\s*\[\s*" + re.escape(".".join(keys)) + r"\s*\]")
    for n, line in enumerate(lines):
        if header.match(line):
            return n + 1
    return None


def describe_validation_error(err: ValidationError, text: str) -> list[str]:
    """One `line N: field 'a.b': message` string per pydantic error."""
    problems = []
    for item in err.errors():
        loc = item.get("loc", ())
        field = ".".join(str(p) for p in loc) or "<root>"
        line = locate_line(text, loc) if text else None
        where = f"{line}: " if line else " "
        value = item.get("input")
        shown = f" (got {value!r})" if value is not None and not isinstance(value, dict | list) else ""
        problems.append(f"{where}field '{field}': {item['msg']}{shown}")
    return problems


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; ConfigError with the line and column on a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [" file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f" cannot read: {exc}"]) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+), column (\d+)", str(exc))
        where = f"{m.group(1)}:{m.group(2)}: " if m else " "
        raise ConfigError(path, [f"{where}TOML syntax error: {exc}"]) from None
