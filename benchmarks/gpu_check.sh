#!/usr/bin/env bash
# Everything a GPU can check, in one command, on a bare GPU machine (< 8 minutes on an H100/H200):
#   benchmarks/gpu_check.sh OUT_DIR
# 1. the kernel benchmark (kernel vs PyTorch composition, % of copy bandwidth; --sweep: other launch geometries),
#    and then the shipped attention kernels at every T of 8-16 (kernels_frames, before the tests: a call cut
#    short by its time limit keeps the goal's measurement);
# 2. GPU-marked tests: kernels vs references, the AOT PTX launched through CuPy, FP16 model vs FP32,
#    CUDA-graph replay vs eager;
# 3. the base model at LR 180x320, T=8: FP32 eager, FP16 eager, FP16 + kernels, + CUDA graphs (NCHW and
#    channels_last), + torch.compile (NCHW, compiling for about 40 s; channels-last compiled measured slower
#    in runs 4-6, now only with GPU_CHECK_COMPILE_CL=1; without Inductor's freezing, the shipped
#    compile's, with GPU_CHECK_NO_FREEZING=1; more Inductor options with GPU_CHECK_COMPILE_EXTRA=max_autotune=1);
# 4. `vggx upscale --backend torch --device cuda --fp16` end to end vs pure inference (and encode alone),
#    two windows in flight (the CLI's default on CUDA): the base model's compute on a 480-frame clip at
#    x264 medium and on 96 frames at veryfast, the tiny model at veryfast with four x264 on segments
#    (--encoders 4); more rows (tiny model at medium, run 8's short clips) with GPU_CHECK_MORE_E2E=1,
#    compiled with GPU_CHECK_E2E_COMPILE=1; then the real CLI on the README's sample clip.
# Writes OUT_DIR/gpu_check.json (all results) and OUT_DIR/summary.txt; GPU_CHECK_SWEEP=1 adds the kernels'
# launch-geometry sweep (about a minute), GPU_CHECK_TACTICS=1 times every TensorRT tactic's attention PTX at every T
# of 8-16 (kernels_frames), GPU_CHECK_NO_COMPILE=1 leaves out the torch.compile variants (about
# two minutes less), GPU_CHECK_ONLY="step step ..." runs only the steps named (e.g. after a change:
# GPU_CHECK_ONLY="gpu_tests kernels"). Needs PyTorch with CUDA and
# OpenAI Triton preinstalled; pure-Python packages the image lacks come from wheels in .whl/
# (git-ignored; see benchmarks/README.md), nothing is downloaded.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vggx-site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/vggx-site${PYTHONPATH:+:$PYTHONPATH}
fi
# vggx itself, without touching the image's packages (no build isolation: nothing to download).
"$PY" -m pip install -q --no-deps --no-build-isolation --no-compile --target /tmp/vggx-pkg . >"$OUT/install.log" 2>&1 \
  || { echo "installing vggx failed, see $OUT/install.log"; exit 1; }
export PYTHONPATH=/tmp/vggx-pkg:${PYTHONPATH:-}
"$PY" - <<'PY' || exit 1
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: PyTorch sees no CUDA GPU here")
print("gpu_check on", torch.cuda.get_device_name(), "torch", torch.__version__)
PY
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$OUT/nvidia-smi.csv" 2>&1

step() {  # step NAME TIMEOUT_S CMD...: run with a time limit, log to OUT/NAME.log, record the status
  local name=$1 limit=$2; shift 2
  if [ -n "${GPU_CHECK_ONLY:-}" ] && [[ " $GPU_CHECK_ONLY " != *" $name "* ]]; then return; fi
  local t0=$SECONDS
  (cd "$OUT" && timeout "$limit" "$@") >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$OUT/steps.txt"
}

# Steps run in OUT: from the repository root, `python -m` would import the source folder vggx/ (which
# lacks the package-dir mapping) instead of the installed package. Limits are caps; run 5 took 6 min, the steps added since ~1 more.
# The kernels first (the custom-op issue's measurements; run 10: 117 s with --sweep, about twice the rows since),
# then the GPU tests (run 10: over 200 s with Triton's cache cold, 103 s warm).
# --warm 8: the rows' kernels compiled first in 8 processes side by side (the step was mostly compiling, one at a time).
step kernels 300 "$PY" -m vggx.benchmarks.kernels ${GPU_CHECK_SWEEP:+--sweep} --warm 8 --json "$OUT/kernels.json"
# Then the custom-op goal's every T (8-16) for the shipped attention kernels, JIT and the TensorRT plugin's PTX (run 13),
# and beside them the other choice of last query block (FP16 at T = 9-10 ships a ragged one untimed: fma,full-last).
# GPU_CHECK_TACTICS=1: also every TensorRT tactic's PTX (aot,tN rows; the summary's "fastest tactic timed" line is
# what an engine build would keep), about 7 more rows per T.
step kernels_frames $((${GPU_CHECK_TACTICS:+150} + 150)) "$PY" -m vggx.benchmarks.kernels --frames 8-16 --shipped-only \
  --warm 8 ${GPU_CHECK_TACTICS:+--tactics} --json "$OUT/kernels_frames.json"
# With pytest-xdist carried (.whl/), 8 workers share the GPU: the tests' cost is Triton compiling their kernels on the
# CPU (run 10: over 200 s with the cache cold, 103 s warm, one process), which 16 cores can do side by side.
XDIST=$("$PY" -c 'import xdist' 2>/dev/null && echo "-n 8")
step gpu_tests 320 "$PY" -m pytest -q -m gpu $XDIST -p no:cacheprovider --rootdir "$ROOT" \
  --junitxml "$OUT/gpu_tests.xml" "$ROOT/tests/plugins" "$ROOT/tests/gpu"
# What --tile costs on the CUDA fast path (tiny model, FP16, graphs): balanced tiles vs full-size ones, side by side
# (run 10: not done in 60 s).
step tiles 120 "$PY" -m vggx.benchmarks.tiles --backend torch --device cuda --fp16 --lr-size 540x960 \
  --tiles none,288x512,192x352 --plain --repeats 5 --json "$OUT/tiles.json"
COMPILE_ARG=--compile
[ -z "${GPU_CHECK_NO_COMPILE:-}" ] || COMPILE_ARG=
step gpu_model 240 "$PY" -m vggx.benchmarks.gpu_model --config base --lr-size 180x320 --window 8 --profile 15 \
  ${COMPILE_ARG:+"$COMPILE_ARG"} ${GPU_CHECK_COMPILE_CL:+--compile-channels-last} \
  ${GPU_CHECK_NO_FREEZING:+--compile-no-freezing} ${GPU_CHECK_COMPILE_EXTRA:+--compile-extra "$GPU_CHECK_COMPILE_EXTRA"} \
  --json "$OUT/gpu_model.json"
# End to end as `vggx upscale` runs on CUDA (two windows in flight), on 480-frame clips (20 s at 24 fps): run 8's
# 96-frame clips lasted 1.3-1.9 s, of which x264's fill and flush at medium (rc-lookahead 40 plus ~24 frame
# threads on 16 cores: ~60 frames in flight) took about 0.5 s. The base model's compute (untrained, RGB head
# zeroed: bicubic output) is a GPU slower than the encoder; the tiny model's is faster than x264 on 16 cores.
E2E=("$PY" -m vggx.benchmarks.upscale_overlap --backend torch --device cuda --fp16 --size 180x320 --repeats 2 \
  --concurrency 2)
step upscale_e2e_base_long 150 "${E2E[@]}" --config base --frames 480 --repeats 1 \
  --json "$OUT/upscale_e2e_base_long.json"
step upscale_e2e_base_veryfast 60 "${E2E[@]}" --config base --frames 96 --preset veryfast \
  --json "$OUT/upscale_e2e_base_veryfast.json"
step upscale_e2e_veryfast_encoders4 60 "${E2E[@]}" --frames 192 --preset veryfast --encoders 4 \
  --json "$OUT/upscale_e2e_veryfast_encoders4.json"
# More rows with GPU_CHECK_MORE_E2E=1: the tiny model on 480 frames at medium with 4 encoders (run 9: encoder-bound,
# 97 % of x264 alone) and run 8's short clips (96/192 frames, one x264 and four on segments, x264 alone).
if [ -n "${GPU_CHECK_MORE_E2E:-}" ]; then
  step upscale_e2e_long 120 "${E2E[@]}" --frames 480 --encoders 4 --repeats 1 --json "$OUT/upscale_e2e_long.json"
  step upscale_e2e 60 "${E2E[@]}" --frames 96 --json "$OUT/upscale_e2e.json"
  step upscale_e2e_veryfast_c2 60 "${E2E[@]}" --frames 96 --preset veryfast --json "$OUT/upscale_e2e_veryfast_c2.json"
  step encoders 90 "$PY" -m vggx.benchmarks.encoders --frames 192 --encoders 1,2,4 --preset medium --repeats 2 \
    --json "$OUT/encoders.json"
  step upscale_e2e_encoders4 60 "${E2E[@]}" --frames 192 --encoders 4 --json "$OUT/upscale_e2e_encoders4.json"
  step upscale_e2e_base 60 "${E2E[@]}" --config base --frames 96 --json "$OUT/upscale_e2e_base.json"
fi
# Compiled end to end (runs 5-6: encoder-bound, 168-171 fps at veryfast) only on request.
[ -z "${GPU_CHECK_E2E_COMPILE:-}" ] || step upscale_e2e_compile 120 "${E2E[@]}" --compile --frames 96 \
  --preset veryfast --json "$OUT/upscale_e2e_compile.json"
# A folder of short clips one at a time and several at once (--jobs), the tiny model on the GPU, 16 cores encoding.
step jobs 60 "$PY" -m vggx.benchmarks.jobs --model backend --backend torch --device cuda --fp16 --clips 16 \
  --frames 48 --size 180x320 --jobs 1,2,4 --preset veryfast --repeats 1 --json "$OUT/jobs.json"
# The README's sample clip (a photograph under a panning camera, with audio) through the real CLI.
step upscale_cli 40 bash -c "'$PY' -m vggx.sample sample.mp4 --frames 96 && TIMEFORMAT='wall %R s' && \
  time '$PY' -m vggx.cli upscale sample.mp4 sample_x4.mp4 --backend torch --device cuda --fp16 \
  && '$PY' -c 'import av; c = av.open(\"sample_x4.mp4\"); s = c.streams.video[0]; print(\"output\", s.width, s.height, s.frames)'"
# The same clip end to end vs pure inference (the issue's "real clip"; 96x144 -> 384x576, default preset).
step upscale_e2e_sample 60 "$PY" -m vggx.benchmarks.upscale_overlap --backend torch --device cuda --fp16 \
  --input sample.mp4 --repeats 3 --concurrency 2 --json "$OUT/upscale_e2e_sample.json"
(cd "$OUT" && "$PY" -m vggx.benchmarks.gpu_summary "$OUT")
