"""The benchmark runner: figures are found in each benchmark's JSON and summarized honestly."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from bench.__main__ import BENCHES, lookup, summarize

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def test_lookup_selects_list_elements_by_field() -> None:
    doc = {"video": [{"ours": {"n": 4, "fps": 25}}, {"ours": {"n": 25, "fps": 5.5}}], "flag": True}
    assert lookup(doc, "video[n=25].ours.fps") == 5.5
    assert lookup(doc, "video[n=9].ours.fps") is None
    assert lookup(doc, "missing.key") is None
    assert lookup(doc, "flag") is None  # a boolean is not a figure


def test_summary_is_median_min_max_of_all_runs_and_keeps_missing_runs() -> None:
    s = summarize([3.0, None, 1.0, 10.0])
    assert (s["median"], s["min"], s["max"]) == (3.0, 1.0, 10.0)
    assert s["runs"] == [3.0, None, 1.0, 10.0]


def test_every_figure_resolves_in_the_committed_results() -> None:
    """A typo in a figure's path would report '-' for ever: each must resolve in the last run's JSON."""
    for bench in BENCHES:
        assert importlib.util.find_spec("bench." + bench.name.split()[0]) is not None, bench.name
        document = json.loads((RESULTS / bench.result_file).read_text())
        missing = [f.label for f in bench.figures if lookup(document, f.path) is None]
        assert missing == [], (bench.name, missing)
