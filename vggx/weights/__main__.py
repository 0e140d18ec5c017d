"""``python -m vggx.weights``: export the shipped checkpoint's portable ONNX graph beside it.

Run it after the shipped checkpoint changes or the exporter's ``GRAPH_REVISION`` (:mod:`vggx.graph`) does (a test
fails until then): the default backend then loads the shipped graph instead of spending a minute exporting it on a
user's first run.
"""

from __future__ import annotations

import sys


def main() -> int:
    from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from vggx.client.runners import export_portable, shipped_onnx_path

    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    target = export_portable(ckpt, shipped_onnx_path(DEFAULT_CHECKPOINT, ckpt.config.window))
    for old in target.parent.glob("vggx-*.onnx"):  # another checkpoint's or graph revision's
        if old != target:
            old.unlink()
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
