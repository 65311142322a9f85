"""bench/latency_runs.py's summary: medians per tool, ratios taken within each run, targets counted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from latency_runs import render, summarise


def _run(mv: float, mb: float, noop: float) -> dict[str, Any]:
    def ok(w: float) -> dict[str, Any]:
        return {"status": "ok", "wall_s": w}

    r = mv / mb
    return {
        "host": {"loadavg_start": [0.5, 0, 0], "loadavg_end": [0.7, 0, 0]},
        "conditions": {"imaps_proxy": "30 ms RTT", "server_fsync": "optimized"},
        "versions": {"mailvault": "mailvault 0", "mbsync": "isync 1.4.4"},
        "corpus": {"messages": 10},
        "results": {
            "mailvault": {"fresh": ok(mv), "noop": ok(noop)},
            "mbsync": {"fresh": ok(mb), "noop": {"status": "failed: x", "wall_s": None}},
        },
        "ratios": [
            {"op": "fresh", "anchor": "mbsync", "value": r, "target": 0.25, "met": r <= 0.25},
            {"op": "noop", "anchor": "mbsync", "value": None, "target": float("inf"), "met": None},
        ],
    }


def test_summary_takes_ratios_within_runs_and_counts_targets() -> None:
    runs = [_run(2.0, 10.0, 0.3), _run(2.2, 5.5, 1.2), _run(1.9, 8.0, 0.4)]
    s = summarise(runs)
    fresh = s["fresh"]
    assert fresh["wall"]["mailvault"]["median"] == 2.0
    assert fresh["wall"]["mbsync"]["min"] == 5.5 and fresh["wall"]["mbsync"]["max"] == 10.0
    rat = fresh["ratios"]["mbsync"]
    assert rat["runs"] == [0.2, 0.4, 1.9 / 8.0]
    assert rat["median"] == 1.9 / 8.0
    assert rat["met_runs"] == 2
    # A failed anchor run is left out, not counted as zero seconds.
    assert "mbsync" not in s["noop"]["wall"]
    text = render(s, runs)
    assert "met in 2/3 runs" in text
    assert "<= 1 s: met in 2/3 runs" in text


def test_the_header_shows_the_hosts_cpu_calibration_range() -> None:
    """The host's speed drifts on a shared VM: the summary shows the calibrations of all runs
    (start and end of each), and says n/a for reports written before the calibration existed."""
    runs = [_run(2.0, 10.0, 0.3), _run(2.2, 5.5, 1.2)]
    runs[0]["host"]["cpu_calibration"] = [0.171, 0.18]
    runs[1]["host"]["cpu_calibration"] = [0.29, None]
    assert "CPU calibration (zstd -9 of 4 MiB, CPU s): 0.171-0.290" in render(summarise(runs), runs)
    old = [_run(2.0, 10.0, 0.3)]
    assert "CPU calibration (zstd -9 of 4 MiB, CPU s): n/a" in render(summarise(old), old)


def test_cpu_calibration_is_a_positive_cpu_time() -> None:
    from common import CALIBRATION_BYTES, _calibration_text, cpu_calibration

    assert len(_calibration_text()) == CALIBRATION_BYTES
    value = cpu_calibration()
    assert value is not None and 0 < value < 30


def test_the_header_shows_where_the_tools_stored_and_the_file_create_cost() -> None:
    runs = [_run(2.0, 10.0, 0.3), _run(2.2, 5.5, 1.2)]
    runs[0]["conditions"]["store"] = {
        "path": "/x",
        "fs": "ext4",
        "files": 10,
        "fsync": True,
        "delivery_s": 3.5,
    }
    runs[1]["conditions"]["store"] = {
        "path": "/y",
        "fs": "ext4",
        "files": 10,
        "fsync": True,
        "delivery_s": 5.08,
    }
    text = render(summarise(runs), runs)
    assert (
        "tools stored on ext4; a bare Maildir delivery of 10 files there (fsync each: yes): 3.50-5.08 s"
        in text
    )
    old = [_run(2.0, 10.0, 0.3)]
    assert "where the tools store: not recorded" in render(summarise(old), old)


def test_an_alternate_series_adds_its_arguments_to_the_first() -> None:
    from latency_runs import series_args

    assert series_args(["--ops", "fresh"], None) == [("", ["--ops", "fresh"])]
    both = series_args(["--ops", "fresh"], "--store-dir '/dev/shm/a b'")
    assert [extra for _, extra in both] == [
        ["--ops", "fresh"],
        ["--ops", "fresh", "--store-dir", "/dev/shm/a b"],
    ]
    assert both[0][0] != both[1][0]
