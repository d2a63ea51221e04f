"""Writing one benchmark run's result: the JSON under bench/results/ and the table on stdout."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: dict[str, Any], load_before: float) -> Path:
    """Add the machine's conditions to ``result``, write it to ``bench/results/<name>.json`` and print
    one line a figure. ``load_before``: the 1-minute load average before the run (a busy machine
    makes every figure pessimistic, so the reader must see it)."""
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_average_before": load_before}
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:<24} {value}")
    return out
