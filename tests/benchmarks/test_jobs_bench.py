"""``python -m vggx.benchmarks.jobs``: a folder of short clips one at a time and several at once; the GPU check's
summary line of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def test_rows_for_each_jobs_count(tmp_path, capsys):
    from vggx.benchmarks.jobs import main

    out = tmp_path / "jobs.json"
    assert main(["--clips", "3", "--frames", "12", "--size", "36x64", "--jobs", "1,2", "--repeats", "1",
                 "--preset", "ultrafast", "--backend", "torch", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["clips"] == 3 and data["frames"] == 12 and [r["jobs"] for r in data["rows"]] == [1, 2]
    assert data["rows"][0]["speedup"] == 1.0 and all(r["fps"] > 0 for r in data["rows"])
    assert data["warm_up_seconds"] > 0  # the untimed first clip
    printed = capsys.readouterr().out
    assert "--jobs 2:" in printed and "warm-up clip, not timed" in printed


def test_gpu_summary_lists_the_jobs_rows(tmp_path):
    from vggx.benchmarks.gpu_summary import summarise

    shutil.copy(Path(__file__).parents[2] / "benchmarks" / "results" / "jobs_cpu_free.json", tmp_path / "jobs.json")
    summarise(tmp_path)
    line = (tmp_path / "summary.txt").read_text().splitlines()[0]
    assert line.startswith("folder of 8 clips x 48 frames (nearest-neighbour x4") and "--jobs 4: " in line
