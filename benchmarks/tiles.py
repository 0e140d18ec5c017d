"""What ``vggx upscale --tile`` costs: one window of a real model untiled and in smaller tiles, side by side.

    python -m vggx.benchmarks.tiles [--lr-size HxW] [--tiles none,128x224,96x160] [--backend onnxruntime|torch]
        [--device cpu|cuda] [--fp16] [--checkpoint P] [--threads N] [--repeats R] [--plain] [--json PATH]

For each tile size (``none``: the model's max size, one tile): the tiles a frame is cut into, the median time of
one window (``upscale_frames``, tiles run one after another as the pipeline runs them), its ratio to the untiled
window (the overlaps are computed twice), and how far the stitched frames are from the untiled ones (PSNR, the
largest difference, the share of identical values): tiles see less spatial context at their borders, and the
feathered blend hides the seams without making them vanish. ``--plain`` adds, after each tile size, the same size
planned the simple way (tiles of the full size, the last one shorter), to show what balancing the tiles saves.
The frames are a photograph panned across the window (scikit-image's "rocket", held out of training), resized to
``--lr-size``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vggx.errors import ConfigError, VggxError
from vggx.paths import json_text
from vggx.shapes import parse_size

from .bench import add_runner_options, runner_config, stamp

__all__ = ["main", "measure_tiles", "panned_photo"]


def panned_photo(size: tuple[int, int], frames: int) -> np.ndarray:
    """uint8 ``(frames, h, w, 3)``: the held-out photograph resized to cover ``size`` plus the pan, panned 2 pixels
    right and 1 down per frame."""
    import torch
    import torch.nn.functional as F

    from vggx.training.data import load_images

    h, w = size
    image = load_images(("rocket",))[0][None]
    scale = max((h + frames) / image.shape[-2], (w + 2 * frames) / image.shape[-1])
    big = F.interpolate(image, scale_factor=scale, mode="bicubic", antialias=scale < 1, align_corners=False)
    big = (big[0].clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return np.stack([big[i: i + h, 2 * i: 2 * i + w] for i in range(frames)])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def measure_tiles(runner, lr_size: tuple[int, int], tiles: list[tuple[int, int] | None], repeats: int = 3,
                  plain: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """One row per tile size (see the module doc); the runner is warmed up on each tile shape first. ``plain``:
    also each tile size planned without balancing (tiles of the full size, the last one shorter), the row after.
    ``progress`` gets a line as each row starts and ends (on a GPU each new tile shape costs seconds of warm-up:
    a run cut short still says how far it got)."""
    from vggx.client import upscale_frames
    from vggx.client.windows import plan_tiles

    info = runner.info
    frames = panned_photo(lr_size, info.window)
    rows = []
    untiled = None
    runs = [(tile, balanced) for tile in tiles for balanced in ((True, False) if plain and tile else (True,))]
    for tile, balanced in runs:
        limit = info.max_size if tile is None else (min(tile[0], info.max_size[0]), min(tile[1], info.max_size[1]))
        plan = plan_tiles(lr_size, limit, info.size_multiple, info.scale, balanced=balanced)
        name = "untiled" if tile is None else "x".join(map(str, limit)) + ("" if balanced else " plain")
        t_warm = time.perf_counter()
        out = upscale_frames(runner, frames, max_tile=limit, balanced=balanced)  # warm-up: every tile shape once
        if progress:
            progress(f"{name}: {plan.count} tiles, warm-up {time.perf_counter() - t_warm:.1f} s")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            upscale_frames(runner, frames, max_tile=limit, balanced=balanced)
            times.append(time.perf_counter() - t0)
        if untiled is None:
            untiled = out
        diff = np.abs(out.astype(np.int16) - untiled.astype(np.int16))
        rows.append({
            "tile": None if tile is None else list(limit), "balanced": balanced, "tiles_per_frame": plan.count,
            "rows": [list(r) for r in plan.rows], "cols": [list(c) for c in plan.cols],
            "ms_per_window": round(statistics.median(times) * 1e3, 2),
            "psnr_vs_untiled_db": round(_psnr(out, untiled), 2), "max_diff": int(diff.max()),
            "identical": round(float((diff == 0).mean()), 4),
        })
    base = rows[0]["ms_per_window"]
    for row in rows:
        row["time_ratio"] = round(row["ms_per_window"] / base, 3)
    return {"lr_size": list(lr_size), "window": info.window, "backend": runner.description, "rows": rows,
            "notes": {"psnr_vs_untiled_db": "null where a row's frames are the untiled ones exactly (an infinite "
                                            "PSNR, which JSON cannot hold): always the first row, the reference"}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.tiles", description=__doc__.splitlines()[0])
    p.add_argument("--lr-size", default="180x320", help="HxW of the model's input frames")
    p.add_argument("--tiles", default="none,128x224,96x160,64x96",
                   help="comma-separated tile sizes HxW; none = the model's max size (the first is the baseline)")
    add_runner_options(p, fp16=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--plain", action="store_true",
                   help="also time each tile size planned without balancing (tiles of the full size), side by side")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.cli import check_json_path
    from vggx.client import open_runner

    try:
        if args.repeats < 1:  # checked before the model is loaded (it was a traceback once the first row had run)
            raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
        check_json_path(args.json)
        lr_size = parse_size(args.lr_size)
        tiles = [None if t.strip() == "none" else parse_size(t.strip()) for t in args.tiles.split(",")]
        config = runner_config(args)
        with open_runner(config) as runner:
            result = measure_tiles(runner, lr_size, tiles, args.repeats, args.plain,
                                   progress=lambda line: print(line, file=sys.stderr, flush=True))
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stamp(result, "tiles", argv)
    print(f"{result['backend']}, LR {args.lr_size}, window {result['window']}")
    for row in result["rows"]:
        tile = "untiled" if row["tile"] is None else "x".join(map(str, row["tile"]))
        tile += "" if row["balanced"] else " plain"
        print(f"{tile:<16}{row['tiles_per_frame']:>3} tiles {row['ms_per_window']:>10.1f} ms/window "
              f"x{row['time_ratio']:.2f}   PSNR vs untiled {row['psnr_vs_untiled_db']:>6.2f} dB, "
              f"max diff {row['max_diff']}, identical {100 * row['identical']:.1f}%")
    if args.json:
        args.json.write_text(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
