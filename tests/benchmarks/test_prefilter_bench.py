"""``python -m vggx.benchmarks.prefilter``: noisy clips upscaled with and without a denoiser before the model, each
scored against the truth; what the chains cost a 1080p frame."""

from __future__ import annotations

import json


def test_rows_gains_and_costs(tmp_path, capsys):
    from vggx.benchmarks.prefilter import main

    out = tmp_path / "prefilter.json"
    assert main(["--frames", "3", "--noise", "0,12", "--filters", "fftdnoiz=sigma=10", "--cost-frames", "2",
                 "--backend", "torch", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {(r["noise"], r["filters"]): r for r in data["rows"]}
    assert set(rows) == {(0, None), (0, "fftdnoiz=sigma=10"), (12, None), (12, "fftdnoiz=sigma=10")}
    assert rows[(0, None)]["psnr"] > rows[(12, None)]["psnr"] > 15  # noise costs; the output is still the truth's
    for level in (0, 12):
        filtered = rows[(level, "fftdnoiz=sigma=10")]
        assert filtered["gain_db"] == round(filtered["psnr"] - rows[(level, None)]["psnr"], 3)
    assert rows[(12, "fftdnoiz=sigma=10")]["gain_db"] > 0  # 12 levels of noise: a denoiser first pays
    assert set(data["ms_per_1080p_frame"]) == {"fftdnoiz=sigma=10"}
    assert "PSNR against the truth" in capsys.readouterr().out
