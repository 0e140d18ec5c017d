"""What a GIF's own palette per frame buys over the fixed ``rgb8`` one, in PSNR, on photographs.

    python -m vggx.benchmarks.gif_palette [--images astronaut,coffee,chelsea,rocket] [--json PATH]

``vggx upscale x.gif`` converts each frame with a 256-colour palette of its own (FFmpeg's palettegen in
single-frame mode, then paletteuse with its default dithering: what ``ffmpeg`` users write GIFs with). swscale's
plain conversion to GIF's ``pal8`` would use the fixed ``rgb8`` palette. Each photograph (scikit-image's data) goes
through both, back to RGB, and is compared with itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vggx.errors import ConfigError, VggxError
from vggx.paths import json_text

from .bench import stamp

__all__ = ["main", "measure_palettes"]

IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def measure_palettes(images: tuple[str, ...] = IMAGES) -> list[dict]:
    """One row per scikit-image photograph: its size and the PSNR of each palette (dB)."""
    import av
    from skimage import data

    from vggx.video.encode import _paletted

    rows = []
    for name in images:
        loader = getattr(data, name, None)
        if loader is None:
            raise ConfigError(f"--images: scikit-image has no picture {name!r}")
        image = np.ascontiguousarray(loader()[..., :3])
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image[: h // 2 * 2, : w // 2 * 2])  # even sides, as the pipeline's frames
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        own = _paletted(frame).reformat(format="rgb24").to_ndarray()
        fixed = frame.reformat(format="rgb8").reformat(format="rgb24").to_ndarray()
        rows.append({"image": name, "size": list(image.shape[:2]), "own_palette_db": round(_psnr(own, image), 2),
                     "rgb8_db": round(_psnr(fixed, image), 2),
                     "gain_db": round(_psnr(own, image) - _psnr(fixed, image), 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vggx.benchmarks.gif_palette", description=__doc__.split("\n")[0])
    p.add_argument("--images", default=",".join(IMAGES), help="scikit-image photographs, comma-separated")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    from vggx.cli import check_json_path

    try:
        images = tuple(n.strip() for n in args.images.split(",") if n.strip())
        if not images:
            raise ConfigError("--images names no picture")
        check_json_path(args.json)
        rows = measure_palettes(images)
    except VggxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in rows:
        print(f"{r['image']:<10} {r['size'][0]}x{r['size'][1]}: own palette {r['own_palette_db']:.1f} dB, "
              f"rgb8 {r['rgb8_db']:.1f} dB, +{r['gain_db']:.1f} dB")
    if args.json:
        args.json.write_text(json_text(stamp({"rows": rows}, "gif_palette", argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
