"""Merge the outputs of ``benchmarks/gpu_check.sh`` into ``gpu_check.json`` and ``summary.txt``."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarise(out: Path) -> dict:
    result: dict = {"steps": (out / "steps.txt").read_text().splitlines() if (out / "steps.txt").exists() else []}
    tests = {}
    if (out / "gpu_tests.xml").exists():
        root = ET.parse(out / "gpu_tests.xml").getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        tests = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        tests["failed"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                           if c.find("failure") is not None or c.find("error") is not None]
    result["tests"] = tests
    for name in ("kernels", "gpu_model", "upscale_e2e"):
        result[name] = _load(out / f"{name}.json")
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    lines = [*result["steps"]]
    if tests:
        lines.append(f"tests: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
                     f"{tests['skipped']} skipped {' '.join(tests['failed'])}")
    model = result["gpu_model"]
    if model:
        lines.append(f"model {model['config']} LR {model['lr_size']} T={model['window']} on {model['device']}:")
        for k, r in model["variants"].items():
            lines.append(f"  {k:26s} {r['ms_per_window']:8.2f} ms/window {r['frames_per_s']:7.1f} fps "
                         f"{r['tflops']:6.1f} TFLOP/s ({100 * r['share_of_peak']:.1f}% of peak) "
                         f"x{r['speedup_vs_fp16_eager']:.2f} vs fp16 eager")
    if result["kernels"]:
        lines.append("kernels: " + json.dumps(result["kernels"])[:2000])
    if result["upscale_e2e"]:
        lines.append("upscale e2e: " + json.dumps(result["upscale_e2e"])[:1000])
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    summarise(Path(sys.argv[1]))
