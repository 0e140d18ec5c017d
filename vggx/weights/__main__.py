"""``python -m vggx.weights``: export the shipped checkpoint's portable ONNX graph beside it.

Run it after the shipped checkpoint changes or the exporter's ``GRAPH_REVISION`` does (a test fails until then):
the default backend then loads the shipped graph instead of spending a minute exporting it on a user's first run.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from vggx.client.runners import shipped_onnx_path
    from vggx.export import ExportConfig, export_onnx

    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    target = shipped_onnx_path(DEFAULT_CHECKPOINT, ckpt.config.window)
    tmp = target.with_name(f".{target.name}")
    try:
        export_onnx(ckpt, tmp, ExportConfig())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for old in target.parent.glob("vggx-*.onnx"):  # another checkpoint's or graph revision's
        if old != target:
            old.unlink()
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
