"""The ``vggx`` command line: one Typer app, thin commands over the library.

Each command parses its options, builds a config, calls one library function and prints the result.
``VggxError`` becomes one red line and exit code 1 (the traceback only with ``--debug``); anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vggx.errors import VggxError

app = typer.Typer(
    name="vggx",
    help="VideoGigaGAN-style video super-resolution: export to ONNX/TensorRT, serve with Triton, upscale videos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# emoji=False: ":100:" in "--crop 100:100:0:0", or ":fire:" in a file name, is text, not an emoji code.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
_state = {"debug": False}

CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", "-c", help="vggx .safetensors checkpoint \\[default: the shipped one]")
]
# How the commands that talk to Triton reach it (upscale, bench, info --url): see _triton_options.
UrlOpt = Annotated[list[str] | None, typer.Option(
    "--url", help="Triton HOST:PORT (implies the triton backend); several (repeated, or separated by commas, or a "
    "name with several addresses such as a headless Service): windows spread over the replicas")]
ProtocolOpt = Annotated[str | None, typer.Option(
    "--protocol", help="Triton protocol: grpc (default) or http; an https:// or grpcs:// --url says it")]
SslOpt = Annotated[bool, typer.Option(
    "--ssl", help="TLS to Triton (what an https:// or grpcs:// --url means), e.g. behind an ingress")]
CaCertOpt = Annotated[Path | None, typer.Option(
    "--ca-cert", help="with TLS: the CA file that signed the server's certificate (default: the system's)")]
HeaderOpt = Annotated[list[str] | None, typer.Option(
    "--header", help="'Name: value' sent with every Triton call (repeatable), e.g. an ingress's "
    "'Authorization: Bearer ...'")]
ClientCertOpt = Annotated[Path | None, typer.Option(
    "--client-cert", help="with TLS: this client's certificate, for servers that ask for one (mutual TLS)")]
ClientKeyOpt = Annotated[Path | None, typer.Option("--client-key", help="with --client-cert: its private key")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    "--api-key", envvar="VGGX_API_KEY", show_envvar=True,
    help="the key of a `vggx serve --api-key` server (sent in the vggx-api-key header)")]


def _error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 1) -> None:
    _error_line(message)
    raise typer.Exit(code)


def handle_errors(fn):
    """Turn ``VggxError`` (and Ctrl-C, SIGTERM) into one line and a non-zero exit, unless ``--debug``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from vggx.server import Terminated, sigterm_as_interrupt

        try:
            with sigterm_as_interrupt():  # SIGTERM cleans up as Ctrl-C does
                return fn(*args, **kwargs)
        except VggxError as exc:
            if _state["debug"]:
                raise
            _fail(str(exc), code=exc.exit_code)
        except Terminated:
            if _state["debug"]:
                raise
            _fail("terminated (SIGTERM)", code=143)
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            _fail("interrupted", code=130)

    return wrapper


def check_json_path(path: Path | None) -> None:
    """``--json``: fail before any work when ``path`` cannot be written (``ConfigError``): its temporary file is
    created and removed now, as the write will do it (``os.access`` says yes to root under /proc)."""
    from vggx.errors import ConfigError
    from vggx.paths import unwritable_file

    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():  # "is a directory" (and the rest) is unwritable_file's to say
        raise ConfigError(f"--json {path}: directory {parent} does not exist")
    if (why := unwritable_file(path)) is not None:
        raise ConfigError(f"--json {why}" if why.startswith(str(path)) else f"--json {path}: {why}")


def write_json(path: Path | None, data) -> None:
    """Write ``--json`` output through a temporary file (never half a file), with one clear error if the disk
    refuses it: the results are printed above anyway."""
    from vggx.errors import ConfigError
    from vggx.paths import json_text, write_atomic

    if path is None:
        return
    try:
        write_atomic(path, json_text(data).encode())
    except OSError as exc:
        raise ConfigError(f"cannot write --json {path} ({exc.strerror or exc})") from None


def _command_line(ctx: typer.Context) -> str:
    """The running command as ``vggx COMMAND ARGS`` with the options given on its command line (not the defaults,
    nor what came from the environment), for results files; secrets (``--api-key``, ``--header`` values) as
    ``***``."""
    parts = ["vggx", ctx.info_name or ""]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        value = ctx.params.get(param.name)
        if source is None or source.name != "COMMANDLINE" or value is None:
            continue
        if param.param_type_name == "argument":
            parts.append(str(value))
            continue
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            parts += (param.opts if value else param.secondary_opts)[:1]
            continue
        for item in value if param.multiple else [value]:
            text = str(item)
            if param.name == "api_key":
                text = "***"
            elif param.name == "header":
                name, colon, _ = text.partition(":")
                text = f"{name}: ***" if colon else "***"
            parts += [param.opts[0], text]
    return shlex.join(parts)


def _versions() -> str:
    """``vggx X (torch Y, onnxruntime Z, ...)``: vggx's version and those of the libraries a run's result depends on,
    where installed (their distributions' metadata: nothing imported), for a bug report."""
    from importlib import metadata

    from vggx import __version__

    found = []
    for dist in ("torch", "onnxruntime", "onnxruntime-gpu", "av", "tritonclient", "triton", "tensorrt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{dist} {metadata.version(dist)}")
    return f"vggx {__version__} ({', '.join(found)})" if found else f"vggx {__version__}"


def _print_version(value: bool) -> None:
    if value:
        console.print(_versions(), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks and debug logs")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="vggx's version and those of torch, onnxruntime, PyAV, tritonclient, triton and TensorRT "
        "where installed, then exit", callback=_print_version, is_eager=True)] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@handle_errors
def info(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="checkpoint to describe \\[default: the shipped one]; or -c as the other commands take it")] = None,
    checkpoint_opt: CheckpointOpt = None,
    config: Annotated[str | None, typer.Option("--config", help="describe a config instead: tiny or base")] = None,
    lr_size: Annotated[str, typer.Option("--lr-size", help="LR frame size HxW for the FLOP count")] = "180x320",
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the numbers as JSON")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="describe what a Triton server serves instead: its models, one's config and statistics")
    ] = None,
    model: Annotated[str, typer.Option("--model", help="with --url: the model to describe")] = "vggx",
    protocol: ProtocolOpt = None,
    ssl: SslOpt = False,
    ca_cert: CaCertOpt = None,
    header: HeaderOpt = None,
    client_cert: ClientCertOpt = None,
    client_key: ClientKeyOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """A model's parameters, GFLOPs per output frame, window and scale; with --url, what a Triton server serves.

    With --url: the server, its models and their state, one model's serving config and request statistics.

    Example: vggx info --config base --lr-size 180x320
    """
    from vggx.errors import ConfigError

    check_json_path(json_path)
    if checkpoint is not None and checkpoint_opt is not None and checkpoint != checkpoint_opt:
        raise ConfigError(f"two checkpoints: {checkpoint} and -c {checkpoint_opt}; give one")
    checkpoint = checkpoint or checkpoint_opt
    options = _triton_options(url, protocol, ssl, ca_cert, header, client_cert, client_key, api_key)
    if url is not None:
        if checkpoint or config:
            raise ConfigError("--url describes a served model; it takes no checkpoint or --config")
        _info_served(url, model, options, json_path)
        return
    if model != "vggx":
        raise ConfigError("--model names a model a Triton server serves; it applies with --url (a checkpoint: "
                          "vggx info PATH)")
    import torch

    from vggx.generator import get_config
    from vggx.generator.flops import activation_bytes, measure_cost
    from vggx.shapes import parse_size

    size = parse_size(lr_size, "--lr-size")
    if config and checkpoint:
        raise ConfigError("give a checkpoint or --config, not both")
    if config:
        cfg, meta, source = get_config(config), None, f"config {config}"
    else:
        from vggx.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        cfg, meta, source = ckpt.config, ckpt.metadata, str(checkpoint or DEFAULT_CHECKPOINT)
    cost = measure_cost(cfg, size)
    activations = activation_bytes(cfg, size, dtype=torch.float16)  # what a GPU holds for one window in FP16
    out_size = (size[0] * cfg.scale, size[1] * cfg.scale)
    outside = ""
    if meta and "min_size" in meta and "max_size" in meta:  # a calculator, but not silently past the model's range
        lo, hi = parse_size(meta["min_size"]), parse_size(meta["max_size"])
        if not (lo[0] <= size[0] <= hi[0] and lo[1] <= size[1] <= hi[1]):
            how = "pads it" if size[0] < lo[0] or size[1] < lo[1] else "takes it in tiles"
            outside = f" (outside the model's {meta['min_size']}..{meta['max_size']}: vggx upscale {how})"
    table = Table(title="vggx model", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")
    rows = {
        **({} if config else {"checkpoint": source}),  # a path: a row that folds, not a title wrapped at its dash
        "config": cfg.name,
        "parameters": f"{cost.params:,} ({cost.params / 1e6:.2f} M)",
        "scale": f"×{cfg.scale}",
        "window (T)": str(cfg.window),
        "size multiple": str(cfg.size_multiple),
        "LR -> HR": f"{size[0]}x{size[1]} -> {out_size[0]}x{out_size[1]}{outside}",
        "GFLOPs / output frame": f"{cost.gflops_per_frame:.1f}",
        "GFLOPs / window": f"{cost.flops_per_window / 1e9:.1f}",
        "activations / window (FP16)": f"{activations / 2**30:.2f} GiB",
    }
    if meta:
        rows.update({f"meta.{k}": v for k, v in meta.items()})
    for k, v in rows.items():
        table.add_row(escape(k), escape(v))  # metadata is the checkpoint's text, not markup
    console.print(table)
    write_json(json_path, {
        "config": cfg.name, "params": cost.params, "scale": cfg.scale, "window": cfg.window,
        "lr_size": list(size), "gflops_per_frame": cost.gflops_per_frame,
        "size_multiple": cfg.size_multiple, "activation_bytes_fp16": activations, "metadata": meta or {},
    })


def _info_served(url: str, model: str, options: dict, json_path: Path | None) -> None:
    """``vggx info --url``: the server, its models, ``model``'s serving config and statistics."""
    from vggx.client.triton import describe_server

    d = describe_server(url, model, protocol=options["protocol"].value, ssl=options["ssl"],
                        ca_cert=options["ca_cert"], headers=dict(options["headers"]),
                        client_cert=options["client_cert"])
    console.print(f"{d.server} at {d.url}", highlight=False, markup=False)
    models = Table(title="models")
    for col in ("name", "version", "state", "reason"):
        models.add_column(col)
    for m in d.models:
        models.add_row(*map(escape, (m.name, m.version, m.state, m.reason)))  # a reason quotes logs
    console.print(models)
    if d.model is not None and d.config:
        cfg = d.config
        params = {k: v.get("string_value", "") for k, v in (cfg.get("parameters") or {}).items()}
        groups = ", ".join(f"{g.get('count', 1)} x {g.get('kind', '?').removeprefix('KIND_')}"
                           + (f" on GPUs {','.join(map(str, g['gpus']))}" if g.get("gpus") else "")
                           for g in cfg.get("instance_group", []))
        delay = (cfg.get("dynamic_batching") or {}).get("max_queue_delay_microseconds")
        rows = {
            "serves with": cfg.get("platform") or f"{cfg.get('backend', '?')} ({params.get('serving_backend', '?')})",
            "max batch": str(cfg.get("max_batch_size", 0)),
            "instances": groups or "-",
            "batching delay": "-" if delay is None else f"{int(delay)} µs",
            "window": params.get("window", "?"), "scale": params.get("scale", "?"),
            "LR sizes": f"{params.get('min_size', '?')} .. {params.get('max_size', '?')}",
            "checkpoint": f"{params.get('name', '?')} v{params.get('version', '?')}",
        }
        table = Table(title=escape(f"model {model!r}"), show_header=False)
        for k, v in rows.items():
            table.add_row(k, escape(v))
        console.print(table)
        stats = Table(title="requests since the server started")
        for col in ("version", "requests", "failed", "executions", "queue ms", "compute ms", "request ms"):
            stats.add_column(col, justify="right")
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        for v in d.stats:
            stats.add_row(v["version"], str(v["requests"]), str(v["failed"]), str(v["executions"]),
                          fmt(v["queue_ms"]), fmt(v["compute_ms"]), fmt(v["request_ms"]))
        console.print(stats)
    write_json(json_path, {"url": d.url, "server": d.server, "models": [vars(m) for m in d.models],
                           "model": d.model, "config": d.config, "stats": d.stats})
    if d.model is None:  # the server's models are listed above; the one asked for is not among them
        from vggx.errors import ConfigError

        raise ConfigError(f"no model {model!r} at {d.url}; --model names one of the models listed")
    if not d.config:
        from vggx.errors import ServerError

        raise ServerError(f"model {model!r} at {d.url} is not READY: see its reason above or the server's log")


@app.command()
@handle_errors
def train(
    out: Annotated[Path, typer.Option("--out", help="run directory (state, checkpoints, log)")],
    config: Annotated[str | None, typer.Option("--config", help="model config: tiny or base \\[default: tiny]")
                      ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="stop after this many total steps")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue from OUT/state.safetensors, with the settings it was trained with")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="random seed (runs are deterministic) \\[default: 0]")
                    ] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="clips per step \\[default: 4]")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="frames per training clip \\[default: 7]")] = None,
    patch: Annotated[int | None, typer.Option("--patch", help="LR patch size (multiple of 8) \\[default: 32]")
                     ] = None,
    adversarial: Annotated[bool | None, typer.Option(
        "--adversarial/--no-adversarial", help="add the hinge GAN + feature matching \\[default: off]")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", help="validate every N steps \\[default: 250]")
                         ] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads")] = 1,
) -> None:
    """Train a generator on synthetic clips (resumable, deterministic given --seed).

    Example: vggx train --config tiny --out runs/tiny --steps 2000 --resume
    """
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from vggx.training.train import TrainConfig, Trainer

    if steps is not None and steps < 1:
        raise VggxError(f"--steps must be >= 1, got {steps}")
    if threads < 1:
        raise VggxError(f"--threads must be >= 1, got {threads}")
    if out.exists() and not out.is_dir():
        raise VggxError(f"--out {out} is a file; it names the run's folder (state, checkpoints, log)")
    from vggx.paths import unwritable_folder

    if (why := unwritable_folder(out)) is not None:  # said now, not after the first steps
        raise VggxError(f"--out {out} cannot be written: {why}")
    torch.set_num_threads(threads)
    state = out / "state.safetensors"
    if state.exists() and not resume:
        raise VggxError(f"{out} already holds a training state; pass --resume to continue or choose another --out")
    # resumed: the stored run's settings, those given checked against them (Trainer.load_state); new: the defaults
    base = (TrainConfig.stored(state) if resume else None) or TrainConfig()
    given = {"model": config, "seed": seed, "batch": batch, "frames": frames, "lr_patch": patch,
             "val_every": val_every}
    if adversarial is not None:
        given |= {"adv_weight": 0.05 if adversarial else 0.0, "fm_weight": 1.0 if adversarial else 0.0}
    cfg = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    trainer = Trainer(cfg, out)
    if resume:
        if trainer.load_state():
            console.print(f"resumed at step {trainer.step}")
        else:
            console.print(f"no training state in {out} yet: starting at step 0", markup=False, highlight=False,
                          soft_wrap=True)
    if steps is not None and steps > cfg.steps:  # the learning rate's cosine ends with the schedule
        raise VggxError(f"--steps {steps} is past the run's {cfg.steps}-step schedule, where training ends (the "
                        f"learning rate's cosine reaches its floor there); give --steps {cfg.steps} or less")
    until = cfg.steps if steps is None else steps
    if trainer.step >= until:  # nothing to run: say so rather than show a finished (or overfull) bar
        more = ("it has finished its schedule" if trainer.step >= cfg.steps else
                f"pass a larger --steps, up to the schedule's {cfg.steps}, to go on")
        console.print(f"{out} is at step {trainer.step}, already at or past --steps {until}: nothing to train "
                      f"({more})", markup=False, highlight=False, soft_wrap=True)
        console.print(f"checkpoint: {out / 'latest.safetensors'}", markup=False, soft_wrap=True)  # a path: whole
        return
    trainer.check_out()  # a real write, now: not after the first steps
    with Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("train", total=until, completed=trainer.step, stats="")
        val = trainer.run(until, on_step=lambda s, st: bar.update(
            task, completed=s, stats=f"loss {st['loss']:.4f}"))
    if val:
        console.print(f"step {trainer.step}: val PSNR {val['psnr']:.2f} dB "
                      f"(bicubic {val['psnr_bicubic']:.2f}, gain {val['gain_db']:+.2f} dB)")
    console.print(f"checkpoint: {out / 'latest.safetensors'}", markup=False, soft_wrap=True)  # a path: whole


@app.command()
@handle_errors
def evaluate(
    videos: Annotated[list[str] | None, typer.Argument(
        help="videos to evaluate on (downscaled ×4 BI): files, URLs or image sequences (frames/%06d.png)")] = None,
    checkpoint: CheckpointOpt = None,
    frames: Annotated[int, typer.Option("--frames", help="frames per video")] = 24,
    held_out: Annotated[bool, typer.Option("--held-out/--no-held-out", help="also the held-out clips")] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the table as JSON")] = None,
    region: Annotated[str, typer.Option(
        "--region", help="the part of each video frame scored: the centre HxW at most, in the video's pixels "
        "(the default keeps a CPU run of a 1080p clip to minutes), or full (whole frames); either cut to a "
        "multiple of the model's size unit (32 px for x4)")] = "480x640",
) -> None:
    """PSNR, SSIM and temporal consistency: the model vs bicubic vs frame by frame.

    Example: vggx evaluate my_clip.mp4 --json scores.json
    """
    from vggx.errors import ConfigError
    from vggx.shapes import format_size, parse_size

    check_json_path(json_path)
    try:
        max_hr = None if region.strip().lower() == "full" else parse_size(region)
    except VggxError:
        raise ConfigError(f"--region takes HxW (e.g. 480x640) or full, got {region!r}") from None
    if not held_out and not videos:
        raise ConfigError("nothing to evaluate: name videos, or keep the held-out clips (drop --no-held-out)")
    if videos and frames < 2:  # said now, not after the held-out clips are scored
        raise ConfigError(f"--frames must be >= 2 (the temporal error compares consecutive frames), got {frames}")
    from vggx.checkpoint import load_checkpoint
    from vggx.training.evaluate import EvalClip, VideoClip, standard_methods
    from vggx.training.evaluate import evaluate as run_eval
    from vggx.training.train import validation_clips
    from vggx.video import display_source, open_video
    from vggx.video.decode import is_pipe

    for video in videos or []:  # a missing, unreadable or non-video file: refused before minutes of scoring
        if not is_pipe(video):  # stdin is read once, when it is scored
            with open_video(video, max_frames=frames):
                pass
    ckpt = load_checkpoint(checkpoint)
    methods = standard_methods(ckpt.generator)
    rows = []
    failed: list[str] = []  # the videos that failed as they were decoded (a file cut short): the others are kept
    if held_out:
        clips = [EvalClip(f"held-out-{i}", c.hr, c.lr)
                 for i, c in enumerate(validation_clips(frames=2 * ckpt.config.window, scale=ckpt.config.scale))]
        rows += run_eval(methods, clips, "held-out (BI)", part=ckpt.config.window)
    for video, name in zip(videos or [], _labels([display_source(v) for v in videos or []]), strict=True):
        # decoded a window at a time as it is scored: a window's frames and outputs in memory, not the clip's
        clip = VideoClip(video, frames, ckpt.config.scale, ckpt.config.size_multiple, max_hr)
        try:
            rows += run_eval(methods, [clip], name, part=ckpt.config.window)
        except VggxError as exc:
            failed.append(str(exc))
            continue
        if clip.frames < frames:  # scored on what there is, and said so
            console.print(f"{name}: {clip.frames} frames scored (it has no more; --frames {frames} asked)",
                          highlight=False, markup=False, soft_wrap=True)
        if clip.source_size != clip.size:  # a part of each frame scored: which
            h, w = clip.size
            how = "the centre" if max_hr is not None else "whole frames cut to a multiple of the model's unit:"
            more = " (--region full: whole frames)" if max_hr is not None else ""
            console.print(f"{name}: scored {how} {h}x{w} of {format_size(clip.source_size)}{more}",
                          highlight=False, markup=False, soft_wrap=True)
    table = Table(title=escape(f"vggx evaluate — {checkpoint or 'shipped checkpoint'}"))
    for col in ("data", "method", "PSNR\ndB", "SSIM", "temporal\nerr ×1e3", "vs bicubic\ndB"):
        if col == "data":  # a file's name: the column that folds where the console is narrow
            table.add_column(col, overflow="fold", min_width=10)
        else:
            table.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    bic = {r.dataset: r.psnr for r in rows if r.method == "bicubic"}  # labels are unique: one baseline each
    for r in rows:
        table.add_row(escape(r.dataset), r.method, f"{r.psnr:.2f}", f"{r.ssim:.4f}", f"{r.temporal_error * 1e3:.2f}",
                      f"{r.psnr - bic[r.dataset]:+.2f}")
    if not rows:  # nothing scored: the failure alone
        raise VggxError("; ".join(failed))
    console.print(table)
    write_json(json_path, [r.as_dict() for r in rows])
    if failed:  # the others' scores are above (and in --json); the run still failed
        count = f"{len(failed)} of {len(videos or [])} videos could not be scored: " if len(failed) > 1 else ""
        raise VggxError(count + "; ".join(failed) + " (the table has the others)")


def _labels(sources: list[str]) -> list[str]:
    """Names for ``sources`` in a table: each one's file name, with as many of its folders as tell it apart from
    the others (``calendar/%08d.png``, ``city/%08d.png``); a source named twice gets ``#2``."""
    parts = [s.rstrip("/").split("/") for s in sources]
    depth = [1] * len(sources)
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        clash = {i for i, n in enumerate(names) if names.count(n) > 1 and depth[i] < len(parts[i])}
        if not clash:
            break
        for i in clash:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} #{seen[n]}"
    return names


@app.command()
@handle_errors
def serve(
    model_repository: Annotated[Path, typer.Option("--model-repository", "--repo", help="Triton model repository")
                                ] = Path("model_repository"),
    host: Annotated[str, typer.Option("--host", help="address to bind (0.0.0.0: all)")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP port (0 = any free port)")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port (0 = any free port)")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port", help="metrics port (0 = any free)")] = 8002,
    check: Annotated[bool, typer.Option("--check", help="load, run one request, exit 0/1")] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", help="server log (default: ~/.cache/vggx/logs/…)")
                        ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the model")] = 300.0,
    model: Annotated[str, typer.Option(
        "--model", help="the model to wait for (and --check) when the repository serves several")] = "vggx",
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="VGGX_API_KEY", show_envvar=True,
        help="serve only requests that carry this key (clients: --api-key or VGGX_API_KEY): inference, model "
        "loading, shared memory, config and statistics; health and metadata stay open for probes. Triton takes "
        "it on its command line, which other users of this machine can read: a single-user host or a container")
    ] = None,
) -> None:
    """Run Triton Inference Server on a model repository until Ctrl-C (or SIGTERM).

    Example: vggx serve --model-repository model_repository --http-port 0 --grpc-port 0 --metrics-port 0
    """
    from vggx.server import ServerConfig, TritonServer, check_model, sigterm_as_interrupt, wait_for_signal

    cfg = ServerConfig(model_repository=model_repository, host=host, http_port=http_port, grpc_port=grpc_port,
                       metrics_port=metrics_port, log_file=log_file, startup_timeout_s=timeout, model_name=model,
                       api_key=api_key)
    exposed = _exposure_warning(host, api_key)
    if exposed:
        err_console.print(f"[yellow]warning:[/] {escape(exposed)}", highlight=False, soft_wrap=True)
    with sigterm_as_interrupt(), TritonServer(cfg) as server:
        ep = server.endpoints
        console.print(f"model {cfg.model_name} ready\n  HTTP     http://{ep.http}\n  gRPC     {ep.grpc}\n"
                      f"  metrics  {ep.metrics}\n  server   {server.install.executable}\n"
                      f"  log      {server.log_path}"
                      + ("\n  access   requests need --api-key (health and metadata are open)" if api_key else ""),
                      highlight=False, soft_wrap=True, markup=False)
        if check:
            result = check_model(ep.grpc, cfg.model_name, api_key=api_key)
            console.print(f"check ok: {result.input_shape} -> {result.output_shape} uint8 in "
                          f"{result.latency_s * 1e3:.0f} ms (versions {', '.join(result.versions)})",
                          highlight=False, markup=False)
        else:
            try:  # the signal may come as soon as the line is out
                console.print("serving; Ctrl-C to stop")
                wait_for_signal(server)
            except KeyboardInterrupt:
                console.print("stopping the server")
    if server.killed:  # not a clean shutdown: a supervisor should not read 0
        raise VggxError(f"tritonserver did not shut down within {cfg.shutdown_timeout_s:g} s and was killed (the "
                        f"requests in flight were dropped)")
    console.print("server stopped")


def _exposure_warning(host: str, api_key: str | None) -> str | None:
    """``vggx serve`` on an address others can reach, without ``--api-key``: what that leaves open."""
    if api_key is not None or host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return None
    return (f"serving on {host} without --api-key: whoever reaches the ports can run, load and unload models and "
            "register shared memory; --api-key KEY (or VGGX_API_KEY) restricts all but health and metadata")


def _parse_time(text: str) -> float:
    """``--start``: seconds (``90.5``) or ``[[HH:]MM:]SS[.fff]`` as FFmpeg's ``-ss`` takes it -> seconds."""

    from vggx.errors import ConfigError

    parts = text.strip().split(":")
    try:
        if len(parts) > 3 or any(not p.strip() for p in parts):
            raise ValueError
        values = [float(p) for p in parts]
        if not all(math.isfinite(v) for v in values) or any(v < 0 for v in values) or any(v >= 60 for v in values[1:]) \
                or any(not v.is_integer() for v in values[:-1]):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--start must be seconds (90.5) or a timestamp (1:30.5, 01:02:03), got {text!r}") from None
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def _parse_rate(text: str):
    """``--fps``: ``24``, ``23.976`` or ``24000/1001`` -> a positive Fraction (``ConfigError`` otherwise)."""
    from fractions import Fraction

    from vggx.errors import ConfigError

    try:
        rate = Fraction(text.strip()).limit_denominator(1001)
    except (ValueError, ZeroDivisionError):
        rate = None
    if rate is None or rate <= 0:
        raise ConfigError(f"--fps must be a positive rate such as 24, 29.97 or 30000/1001, got {text!r}")
    for ntsc in (24000, 30000, 48000, 60000):  # 23.976, 29.97, ... mean the NTSC rates
        if abs(rate - Fraction(ntsc, 1001)) < Fraction(1, 2000):
            return Fraction(ntsc, 1001)
    return rate


def default_concurrency(backend, device: str, servers: int = 1) -> int:
    """Windows in flight when ``--concurrency`` is not given: 4 requests to each Triton server (its instances and
    dynamic batcher need several); 2 on the CUDA fast path, whose two pinned buffer pairs let one window run on
    the GPU while the other's output is copied out (H200, veryfast x264: 187.7 vs 172.0 fps end to end,
    ``benchmarks/RESULTS.md``); 1 on the CPU, where a second window would only share the same cores."""
    from vggx.client import Backend

    if backend is Backend.TRITON:
        return min(64, 4 * servers)
    return 2 if backend is Backend.TORCH and device.startswith("cuda") else 1


@app.command()
@handle_errors
def upscale(
    input: Annotated[str, typer.Argument(
        help="video to upscale (anything FFmpeg reads: a file, an http(s):// URL, an image sequence "
        "frames/%06d.png, one image, or - for standard input), or a folder of videos")],
    output: Annotated[Path, typer.Argument(
        help="output video (.mp4, .mkv, ...), image sequence (out/%06d.png) or image (.png, .tif), a folder "
        "for a folder's, or - for standard output (y4m, for ffmpeg/x264/mpv to read; with --codec, Matroska)")],
    backend: Annotated[str | None, typer.Option(
        "--backend", help="onnxruntime | torch | tensorrt | triton (default: onnxruntime; triton with --url)")
    ] = None,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="leave outputs that already exist (an image sequence: any frame its pattern "
        "numbers; a folder run picks up where it stopped)")
    ] = False,
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="with a folder: the videos in its subfolders too, written to the same places in the "
        "output folder (a library's seasons and episodes)")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", help="a folder's files upscaled at once on the one backend (for short clips on a fast model: "
        "the backend stays busy through each file's opening, first window and final mux, and one file's decoding "
        "and encoding overlap another's)")] = 1,
    resume: Annotated[bool, typer.Option(
        "--resume", help="keep finished 2-second segments beside the output, so that the same command run again "
        "after an error, Ctrl-C or SIGTERM goes on after them (x264, x265, SVT-AV1, VP9, ProRes, FFV1)")] = False,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="also write the results (frames/s, stage busy shares, warm-up, sizes) to this JSON file")
    ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="check everything a run checks (input, output, encoder, the backend: a Triton server "
        "reached and its model ready) and print what it would do; nothing is upscaled or written")] = False,
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
    ssl: SslOpt = False,
    ca_cert: CaCertOpt = None,
    header: HeaderOpt = None,
    client_cert: ClientCertOpt = None,
    client_key: ClientKeyOpt = None,
    api_key: ApiKeyOpt = None,
    model: Annotated[str, typer.Option(
        "--model", help="the served model to call (with --url; vggx export --name gives another)")] = "vggx",
    model_version: Annotated[str, typer.Option(
        "--model-version", help="with --url: the model version to call (default: the newest served; "
        "vggx export --versions-served keeps older ones up)")] = "",
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", help="windows in flight (default: 4 per Triton server, 2 with --backend torch on CUDA, "
                             "1 otherwise)")] = None,
    codec: Annotated[str | None, typer.Option(
        "--codec", help="video encoder: libx264 (default), libx265, libx264rgb, ffv1 (lossless, .mkv), ...; "
        "an image sequence (out/%06d.png or .tif) is written with its own")] = None,
    crf: Annotated[int | None, typer.Option(
        "--crf", help="constant quality for x264/x265/vpx/aom; 0 = lossless (default: 18, unless --bitrate)")] = None,
    bitrate: Annotated[str | None, typer.Option(
        "--bitrate", help="average bits/s instead of a constant quality, e.g. 8M (a streaming ladder's rung); a cap "
        "on either: --encoder-option maxrate=10M --encoder-option bufsize=20M")] = None,
    encoder_option: Annotated[list[str] | None, typer.Option(
        "--encoder-option", "-e", help="KEY=VALUE passed to the video encoder as FFmpeg's -KEY VALUE would be "
        "(repeatable): tune=film, profile=main10, g=48, bf=3, x265-params=aq-mode=3:psy-rd=2 (merged with vggx's "
        "own, yours winning), ...; an option the encoder lacks is refused before any work")] = None,
    pix_fmt: Annotated[str | None, typer.Option(
        "--pix-fmt", help="output pixel format, e.g. yuv444p or yuv420p10le (with libx265) "
        "(default: yuv420p for H.264/H.265, lossless RGB for RGB codecs)")] = None,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="x264/x265 speed preset: ultrafast ... veryslow (default: the encoder's, medium); "
        "veryfast keeps up with a GPU")] = None,
    encoders: Annotated[int, typer.Option(
        "--encoders", help="encoders at once (x264, x265, SVT-AV1, VP9, ProRes, FFV1) on consecutive 2-second "
        "segments (each starts with a keyframe), for many-core machines where one leaves cores idle")] = 1,
    start: Annotated[str, typer.Option(
        "--start", help="start this far into the input: seconds (90.5) or a timestamp (1:30.5, 01:02:03)")] = "0",
    frames: Annotated[int | None, typer.Option("--frames", help="upscale only this many frames (preview)")
                      ] = None,
    compare: Annotated[bool, typer.Option("--compare", help="write bicubic | vggx side by side")] = False,
    outscale: Annotated[float | None, typer.Option(
        "--outscale", help="output size as a multiple of the input's, e.g. 2 for 1080p -> 4K (the model's x4 "
        "output resized, Lanczos; 0.25 to 16)")] = None,
    height: Annotated[int | None, typer.Option(
        "--height", help="output height in pixels as displayed, e.g. 2160; the width keeps the aspect ratio")
    ] = None,
    tile: Annotated[str | None, typer.Option(
        "--tile", help="largest tile sent to the model, in input pixels: N (square) or HxW, e.g. 540x960 to fit a "
        "smaller GPU (default: the model's max size; a GPU that runs out of memory halves it on its own)")] = None,
    alpha: Annotated[str, typer.Option(
        "--alpha", help="an alpha channel, where the output keeps it, enlarged with bicubic (default) or through "
        "the model as a grey clip (edges as sharp as the colour's; twice the inference)")] = "bicubic",
    fps: Annotated[str | None, typer.Option(
        "--fps", help="frame rate of an image-sequence input (frames/%06d.png), e.g. 24 or 24000/1001 "
        "(default: 25, FFmpeg's)")] = None,
    deinterlace: Annotated[bool, typer.Option(
        "--deinterlace", help="deinterlace interlaced input first (FFmpeg's bwdif; progressive frames pass)")
    ] = False,
    tonemap: Annotated[bool, typer.Option(
        "--tonemap", help="an HDR input (HDR10/PQ or HLG, BT.2020) tone-mapped to SDR BT.709 before upscaling "
        "(BT.2390's curve on the brightest channel from the input's peak to 100 cd/m2, BT.2020 to BT.709 primaries): "
        "for SDR screens and sites; the model sees the SDR pictures it was trained on")] = False,
    ivtc: Annotated[bool, typer.Option(
        "--ivtc", help="inverse telecine: film telecined to 29.97 fps (3:2 pulldown: NTSC DVDs, anime, broadcast) back "
        "to its 23.976 progressive frames before upscaling (FFmpeg's fieldmatch and decimate; frames it cannot match "
        "deinterlaced with bwdif): one frame in five, a duplicate, dropped; no combing")] = False,
    vf: Annotated[str | None, typer.Option(
        "--vf", help="FFmpeg filters run on the frames before the model, a chain as ffmpeg's -vf takes one (after "
        "--deinterlace/--ivtc, before --crop): a denoiser or deblocker for compressed sources, which the model would "
        "sharpen into detail (nlmeans=s=2, atadenoise, deblock), fps=24, crop=..., format=gray; audio and "
        "subtitles still go along")] = None,
    context: Annotated[int | None, typer.Option(
        "--context", help="frames of temporal context each window keeps on each side (default: a quarter of the "
        "window, 2 of 8): 1 or 0 is faster (0.74x, 0.49x the time) with seams between windows that flicker a little "
        "more; 3 nearly hides them at 1.74x (benchmarks/RESULTS.md)")] = None,
    scene_cuts: Annotated[bool, typer.Option(
        "--scene-cuts/--no-scene-cuts", help="find scene cuts (FFmpeg's scdet) and start the windows afresh at "
        "each, so that no window mixes two shots (--no-scene-cuts: windows run across cuts)")] = True,
    scene_threshold: Annotated[float, typer.Option(
        "--scene-threshold", help="scene-cut threshold, percent of the largest frame-to-frame change (FFmpeg's: "
        "good values 8-14; lower finds more cuts)")] = 10.0,
    audio_codec: Annotated[str | None, typer.Option(
        "--audio-codec", help="re-encode every audio track with this encoder (aac, libopus, flac, ...) instead of "
        "copying it: for outputs that cannot hold the source's audio (PCM or FLAC into .mp4)")] = None,
    audio_bitrate: Annotated[str | None, typer.Option(
        "--audio-bitrate", help="with --audio-codec: bits/s, e.g. 192k (default: the encoder's; AAC 128k stereo)")
    ] = None,
    video_stream: Annotated[int | None, typer.Option(
        "--video-stream", help="the video stream to upscale, by its index in the input as ffprobe lists them "
        "(default: the one FFmpeg picks; a warning names it where there are several)")] = None,
    copy: Annotated[str, typer.Option(
        "--copy", help="what goes along with the video: all (default: what the input has and the output holds), "
        "none, or some of audio,subtitles,chapters,attachments,cover (e.g. --copy audio: the audio alone)")
    ] = "all",
    crop: Annotated[str, typer.Option(
        "--crop", help="upscale a part of each frame: auto (the picture inside black bars: letterbox, pillarbox, "
        "found in frames spread over the run), W:H:X:Y in input pixels (FFmpeg's crop order) or W:H (centred), or "
        "none; the output is the picture alone (--keep-bars: the input's frame, bars black)")] = "none",
    square_pixels: Annotated[bool, typer.Option(
        "--square-pixels", help="an anamorphic input (non-square pixels: DVDs, HDV) written with square pixels: the "
        "width resized by the pixel shape (a 16:9 NTSC DVD's 720x480 x4 -> 3414x1920), for players, editors and sites "
        "that ignore the shape (default: the shape kept, as the input)")] = False,
    keep_bars: Annotated[bool, typer.Option(
        "--keep-bars", help="with --crop: put the bars back, black, around the upscaled picture, so the output keeps "
        "the input's frame (x4) while the bars cost no inference")] = False,
    progress_interval: Annotated[float, typer.Option(
        "--progress-interval", help="where standard error is not a terminal (a Kubernetes Job's or a batch "
        "system's log): seconds between progress lines (frames done, fps, time left); 0: none")] = 30.0,
    fine_bits: Annotated[bool, typer.Option(
        "--fine-bits/--no-fine-bits", help="a 10/12/16-bit input into an output of more than 8 bits (e.g. --pix-fmt "
        "yuv420p10le, 16-bit PNG): carry its levels below the model's 8 bits into the output, so gradients do "
        "not band (--no-fine-bits: the model's 8 bits, widened)")] = True,
    checkpoint: CheckpointOpt = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N (in-process backends)")] = "cpu",
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 (torch backend on cuda)")] = False,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the model (torch backend on cuda): about 2x faster on an H200 after "
        "a one-off compilation per input shape (about a minute; cached on disk for later runs)")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads of in-process backends")
                       ] = None,
) -> None:
    """Upscale a video ×4: decode, infer in overlapping windows, encode with the audio copied.

    A folder as INPUT: each video in it (by extension, not recursive) goes to
    the folder OUTPUT under the same name, the backend loaded and warmed up once;
    a file that fails is reported and the others go on (exit code 1 at the end).

    --outscale or --height resize the model's output (Lanczos) as it is encoded:
    a 1080p input with --outscale 2 (or --height 2160) gives 4K.

    Example: vggx upscale in.mp4 out.mp4 --url 127.0.0.1:8001 --concurrency 4
    """
    check_json_path(json_path)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from vggx.client import Backend, BackendConfig, UpscaleConfig, open_runner, plan_folder, upscale_many
    from vggx.client import upscale as run_upscale
    from vggx.client.pipeline import check_jobs
    from vggx.errors import ConfigError, VideoError
    from vggx.video import EncodeConfig, is_url
    from vggx.video.encode import STDOUT_RAW_CODEC, check_image_codec, existing_output, image_codec, is_stdout

    choices = {b.value: b for b in Backend}
    url = ",".join(url) if url else None
    name = backend or ("triton" if url else "onnxruntime")
    if name not in choices:
        raise ConfigError(f"--backend must be one of {', '.join(choices)}, got {name!r}")
    chosen = choices[name]
    triton = _triton_options(url, protocol, ssl, ca_cert, header, client_cert, client_key, api_key)
    backend_cfg = BackendConfig(backend=chosen, checkpoint=checkpoint, device=device, fp16=fp16,
                                compile=compile_model, threads=threads, url=url, model_name=model,
                                model_version=model_version, **triton)
    stdout = is_stdout(output)
    out_console = err_console if stdout else console  # standard output carries the video
    if codec is None:  # an image-sequence output picks its own (upscale() does, for the default); a pipe is y4m
        codec = STDOUT_RAW_CODEC if stdout else EncodeConfig().codec
    else:
        check_image_codec(output, codec)
    options = _parse_encoder_options(encoder_option)
    video_bitrate = _parse_bitrate(bitrate, "--bitrate", "8M or 8000000") if bitrate is not None else None
    from vggx.video.encode import CRF_CODECS, LOSSLESS_ONLY

    if crf is not None and codec not in CRF_CODECS:
        raise ConfigError(f"--crf applies to {', '.join(sorted(CRF_CODECS))}, not {codec}"
                          + (" (lossless already)" if codec in LOSSLESS_ONLY else ""))
    if crf is not None and (video_bitrate is not None or "b" in options):
        raise ConfigError("--crf and a bitrate: a constant quality or an average bitrate, not both (a CRF with a "
                          "cap is --encoder-option maxrate=10M --encoder-option bufsize=20M)")
    if crf is None and video_bitrate is None and "b" not in options:
        crf = EncodeConfig().crf
    encode = EncodeConfig(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, encoders=encoders,
                          options=options, bitrate=video_bitrate,
                          audio_codec=audio_codec,
                          audio_bitrate=_parse_bitrate(audio_bitrate) if audio_bitrate is not None else None)
    rate = _parse_rate(fps) if fps is not None else None
    crop_box = _parse_crop(crop)
    tile_size = _parse_tile(tile) if tile is not None else None
    start_s = _parse_time(start)
    servers = 1
    if url and chosen is Backend.TRITON:
        from vggx.client.runners import triton_urls

        servers = len(triton_urls(backend_cfg))

    def config(src: Path, dst: Path) -> UpscaleConfig:
        return UpscaleConfig(
            input=src, output=dst, backend=backend_cfg, encode=encode,
            concurrency=default_concurrency(chosen, device, servers) if concurrency is None else concurrency,
            start=start_s, frames=frames, compare=compare, deinterlace=deinterlace, ivtc=ivtc, tonemap=tonemap,
            filters=vf,
            resume=resume,
            outscale=outscale, height=height, fps=rate, tile=tile_size, alpha=alpha,
            scene_threshold=scene_threshold if scene_cuts else None, context=context, dry_run=dry_run,
            fine_bits=fine_bits, copy=copy, video_stream=video_stream, crop=crop_box,
            keep_bars=keep_bars, square_pixels=square_pixels,
        )

    source = input if is_url(input) or input == "-" else Path(input)
    folder = isinstance(source, Path) and source.is_dir()
    if folder and stdout:
        raise ConfigError(f"{source} is a folder: its videos go to a folder, not to standard output")
    from vggx.video import display_source

    if recursive and not folder:
        raise ConfigError(f"--recursive walks a folder's subfolders; {display_source(source)} is not a folder")
    check_jobs(jobs)  # before any work (upscale_many checks it too, once the backend is open)
    if not progress_interval >= 0:
        raise ConfigError(f"--progress-interval must be >= 0 seconds (0: no progress lines), got {progress_interval:g}")
    if jobs > 1 and not folder:
        raise ConfigError(f"--jobs runs a folder's files at once; {display_source(source)} is one input (for one "
                          f"file, --concurrency keeps more of its windows in flight)")
    pairs = plan_folder(source, output, recursive) if folder else [(source, output)]
    cfgs = [config(src, dst) for src, dst in pairs]  # every setting checked before any work
    made: list[Path] = []  # output folders this run made (taken away again where nothing was written in them)
    if folder:
        for folder_out in sorted({dst.parent for _, dst in pairs}):
            made += reversed([p for p in (folder_out, *folder_out.parents) if not p.exists()])
            folder_out.mkdir(parents=True, exist_ok=True)
    try:
        class _Fps(ProgressColumn):
            def render(self, task) -> Text:
                return Text(f"{task.speed:.2f} fps" if task.speed else "-- fps")

        class _Bar:
            def __init__(self, bar: Progress, file: str | None = None) -> None:
                self.bar, self.file = bar, file  # file: the file of a folder run's bar, one a file (--jobs)
                self.task = bar.add_task(file or f"loading the {name} backend", total=None)

            def start(self, total: int | None, description: str) -> None:
                self.bar.reset(self.task, total=total, description=f"{self.file}: {description}" if self.file else
                               description)

            def advance(self, n: int) -> None:
                self.bar.advance(self.task, n)

        results: list = []

        def report(result) -> None:
            results.append(result)
            h, w = result.output_size
            if result.dry_run:
                out_console.print(_dry_run_line(result, stdout), highlight=False, soft_wrap=True, markup=False)
                return
            resumed = f" ({result.resumed_frames} from the stopped run)" if result.resumed_frames else ""
            where = (f"standard output ({'y4m' if codec == STDOUT_RAW_CODEC else 'Matroska'}, {w}x{h})" if stdout else
                     f"{result.output} ({w}x{h}, {result.output_bytes / 1e6:.2f} MB)")
            frames = f"{result.frames} frame{'s' if result.frames != 1 else ''}"
            out_console.print(f"{frames}{resumed} in {result.seconds:.1f} s ({result.fps:.2f} fps) -> "
                              f"{where} [{result.backend}"
                              + (f", {result.tiles_per_window} tiles a frame" if result.tiles_per_window > 1 else "")
                              + "]", highlight=False, soft_wrap=True, markup=False)
            warmup = _warmup_line(result)
            if warmup:
                out_console.print(warmup, highlight=False, soft_wrap=True, markup=False)
            if result.scene_cuts:
                out_console.print(_scene_cuts_line(result.scene_cuts), highlight=False, soft_wrap=True, markup=False)
            if result.crop is not None:
                out_console.print(_crop_line(result), highlight=False, soft_wrap=True, markup=False)
            depth = _depth_line(result, compare)
            if depth:
                out_console.print(depth, highlight=False, soft_wrap=True, markup=False)
            if result.windows_per_server:
                spread = ", ".join(f"{url} {n}" for url, n in result.windows_per_server.items())
                out_console.print(f"windows per server: {spread}", highlight=False, soft_wrap=True, markup=False)
            out_console.print(_stages_line(result, image_codec(result.output) or codec, stdout), highlight=False,
                              soft_wrap=True, markup=False)

        todo = []
        for c in cfgs:
            there = existing_output(c.output) if skip_existing and not stdout else None
            if there is not None:
                console.print(f"{c.output} exists" + (f" ({there.name} ...)" if there != c.output else "")
                              + ": skipped", highlight=False, soft_wrap=True, markup=False)
            else:
                todo.append(c)
        if not todo:
            _write_results(json_path, [], [])
            if folder:  # the folder's summary line, as every folder run ends with
                console.print(f"0 {'to upscale' if dry_run else 'upscaled'}, {len(cfgs)} skipped, 0 failed",
                              highlight=False, markup=False)
            return
        failed: list[str] = []
        errors: dict[str, str] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Fps(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
                      transient=True, disable=not err_console.is_terminal) as bar:
            lines = None if err_console.is_terminal or not progress_interval else _ProgressLines(progress_interval)
            progress = _Bar(bar) if lines is None else lines
            if not folder:
                try:
                    result = run_upscale(todo[0], progress=progress)
                except VggxError as exc:  # --json says so too, as a folder run's does for each file
                    name = display_source(todo[0].input)
                    _write_results(json_path, [], [name], {name: str(exc)})
                    raise
            else:
                bars: dict[int, _Bar] = {}

                def named(c) -> str:  # a file by its path in the folder
                    return str(c.input.relative_to(source))

                def progress_for(c):
                    if jobs == 1:  # one file at a time: one bar (or line), renamed
                        if lines is not None:
                            lines.name = named(c)
                        return progress
                    if lines is not None:
                        each = _ProgressLines(progress_interval)
                        each.name = named(c)
                        return each
                    bars[id(c)] = _Bar(bar, named(c))
                    return bars[id(c)]

                def finished(c, outcome) -> None:
                    if id(c) in bars:
                        bar.remove_task(bars.pop(id(c)).task)
                    if isinstance(outcome, VideoError):  # this file: reported, the others go on
                        _error_line(str(outcome))
                    else:
                        report(outcome)

                with open_runner(backend_cfg) as runner:  # loaded and warmed up once for the folder
                    if jobs > 1 and lines is None:  # a bar a file from here, not the one that said "loading"
                        bar.remove_task(progress.task)
                    outcomes = upscale_many(todo, runner, jobs, progress=progress_for, done=finished)
                errors = {named(c): str(o) for c, o in zip(todo, outcomes, strict=True) if isinstance(o, VideoError)}
                failed = list(errors)
                results[:] = [o for o in outcomes if not isinstance(o, VideoError)]  # the folder's order
        if not folder:
            report(result)
            _write_results(json_path, results, [])
            return
        _write_results(json_path, results, failed, errors)
        skipped = len(cfgs) - len(todo)
        console.print(f"{len(todo) - len(failed)} {'to upscale' if dry_run else 'upscaled'}, {skipped} skipped, "
                      f"{len(failed)} failed"
                      + (f": {', '.join(failed)}" if failed else ""), highlight=False, soft_wrap=True, markup=False)
        if failed:
            raise typer.Exit(1)
    finally:  # a dry run, an interrupted run or files that failed: no empty folders left behind
        for made_dir in reversed(made):
            with contextlib.suppress(OSError):
                made_dir.rmdir()  # only if empty


_STAGE_NAMES = {"decode": "decode", "infer": "inference", "encode": "encode"}


class _ProgressLines:
    """Progress as a line on standard error every ``interval`` seconds, for logs rather than terminals (a Kubernetes
    Job, a batch system, ``2> log``): frames done (of how many, where the input says), frames/s, time left. The pace
    is counted from the first frames reported (a resumed run's stored frames, or the first window and with it the
    backend's warm-up, are not part of it)."""

    def __init__(self, interval: float, clock=None) -> None:
        import time

        self.interval, self.clock = interval, clock or time.monotonic
        self.name: str | None = None  # the file of a folder run
        self.total: int | None = None
        self.done = 0
        self.t0 = self.last = 0.0
        self.first: tuple[float, int] | None = None  # (when, frames done) at the first report

    def start(self, total: int | None, description: str) -> None:
        self.total, self.done, self.first = total, 0, None
        self.t0 = self.last = self.clock()

    def advance(self, frames: int) -> None:
        self.done += frames
        now = self.clock()
        if self.first is None:
            self.first = (now, self.done)
        if now - self.last >= self.interval:
            self.last = now
            self._print(self.line(now))

    def line(self, now: float) -> str:
        text = f"{self.done}/{self.total} frames ({100 * self.done / self.total:.1f} %)" if self.total else \
            f"{self.done} frames"
        text += f" in {_clock(now - self.t0)}"
        since, then = self.first if self.first is not None else (now, self.done)
        if now > since and self.done > then:
            fps = (self.done - then) / (now - since)
            text += f", {fps:.2f} fps"
            if self.total and self.done < self.total:
                text += f", about {_clock((self.total - self.done) / fps)} left"
        return text

    def _print(self, text: str) -> None:
        err_console.print(f"{self.name}: {text}" if self.name else text, highlight=False, soft_wrap=True,
                          markup=False)


def _clock(seconds: float) -> str:
    """``H:MM:SS`` (``M:SS`` under an hour)."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _parse_bitrate(text: str, option: str = "--audio-bitrate", example: str = "192k or 128000") -> int:
    """``--audio-bitrate``, ``--bitrate``: bits/s as a number, or with k / M / G (``192k``, ``1.5M``)."""
    from vggx.errors import ConfigError

    t = text.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(t[-1:], 1)
    try:
        return round(float(t[:-1] if factor > 1 else t) * factor)
    except ValueError:
        raise ConfigError(f"{option} takes bits/s such as {example}, got {text!r}") from None


def _parse_encoder_options(items: list[str] | None) -> dict[str, str]:
    """``--encoder-option KEY=VALUE`` (repeated): FFmpeg's options of the encoder, in the order given (a key given
    twice: the last)."""
    from vggx.errors import ConfigError

    options = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise ConfigError(f"--encoder-option takes KEY=VALUE with FFmpeg's name for KEY (tune=film, g=48, "
                              f"x265-params=aq-mode=3:psy-rd=2), got {item!r}")
        options[key.strip().lstrip("-")] = value
    return options


def _parse_crop(text: str):
    """``--crop``: ``none`` (None), ``auto``, or a rectangle ``W:H:X:Y`` / ``W:H``."""
    from vggx.video.crop import Crop

    word = text.strip().lower()
    return None if word == "none" else "auto" if word == "auto" else Crop.parse(text)


def _parse_tile(text: str) -> tuple[int, int]:
    """``--tile``: ``N`` (N x N) or ``HxW``, input pixels."""
    from vggx.errors import ConfigError
    from vggx.shapes import parse_size

    if text.strip().isdigit():
        text = f"{text.strip()}x{text.strip()}"
    try:
        return parse_size(text)
    except ConfigError:
        raise ConfigError(f"--tile must be N or HxW in input pixels (e.g. 512 or 540x960), got {text!r}") from None


def _write_results(path: Path | None, results: list, failed: list[str], errors: dict[str, str] | None = None) -> None:
    """``--json``: one object per upscaled video, the names of those that failed and, by name, why, for scripts."""
    from vggx.video import display_source

    if path is None:
        return
    rows = [{"input": display_source(r.input), "output": str(r.output), "frames": r.frames,
             "seconds": round(r.seconds, 4), "fps": None if r.dry_run else round(r.fps, 3),
             "fps_after_first_window": None if r.steady_fps is None else round(r.steady_fps, 3),
             "first_window_seconds": round(r.first_window_seconds, 4), "input_size": list(r.input_size),
             "output_size": list(r.output_size), "output_bytes": r.output_bytes, "windows": r.windows,
             "tiles_per_window": r.tiles_per_window, "tile": list(r.tile) if r.tile else None,
             "backend": r.backend, "concurrency": r.concurrency,
             "resumed_frames": r.resumed_frames, "windows_per_server": r.windows_per_server,
             "scene_cuts": list(r.scene_cuts), "copied": list(r.copied), "audio_codec": r.audio_codec,
             "dry_run": r.dry_run,
             "input_bits": r.input_bits, "output_bits": r.output_bits, "fine_bits": r.fine_bits, "hdr": r.hdr,
             "encoder": r.encoder, "tonemap": r.tonemap, "filters": r.filters,
             "crop": None if r.crop is None else [r.crop.width, r.crop.height, r.crop.x, r.crop.y],
             "keep_bars": r.keep_bars, "rate": None if r.rate is None else str(r.rate),
             "damaged_packets": r.damaged_packets,
             "bars": None if r.bars is None else [r.bars.width, r.bars.height, r.bars.x, r.bars.y],
             "busy": {k: round(v, 4) for k, v in r.utilisation.items()}, "bottleneck": r.bottleneck}
            for r in results]
    write_json(path, {"results": rows, "failed": failed, "errors": errors or {}})


def _dry_run_line(result, stdout: bool = False) -> str:
    """``--dry-run``: what the run would do, in one line."""
    (ih, iw), (oh, ow) = result.input_size, result.output_size
    frames = f"about {result.frames} frames" if result.frames else "the frames (the input does not say how many)"
    windows = f", {result.windows} windows" if result.windows else ""
    tiles = f", {result.tiles_per_window} tiles a frame" if result.tiles_per_window > 1 else ""
    resumed = f", going on after the {result.resumed_frames} frames stored" if result.resumed_frames else ""
    copied = ", ".join(f"audio (re-encoded with {result.audio_codec})" if k == "audio" and result.audio_codec else k
                       for k in result.copied) or "nothing"
    where = "standard output" if stdout else str(result.output)
    depth = _depth_line(result)
    crop = f"; {_crop_line(result)}" if result.crop is not None else ""
    if result.bars is not None:
        share = 1 - result.bars.width * result.bars.height / (iw * ih)
        crop = (f"; black bars in every frame looked at, the picture {result.bars.describe(result.input_size)}: "
                f"--crop auto would upscale {share:.0%} fewer pixels")
    rate = f" at {float(result.rate):.6g} fps" if result.rate else ""
    filtered = f" (through --vf {result.filters!r})" if result.filters else ""
    return (f"dry run: would upscale {frames} of {iw}x{ih}{rate}{filtered} to {ow}x{oh} into {where} with "
            f"{result.backend}"
            f"{windows}{tiles}{resumed}, encoded with {result.encoder}; copied along: {copied}{crop}"
            + (f"; {depth}" if depth else "")
            + "; nothing was written")


def _crop_line(result) -> str:
    """What ``--crop`` upscaled of each frame."""
    kept = "put back, black" if result.keep_bars else "left out (--keep-bars puts them back)"
    return f"cropped: upscaled {result.crop.describe(result.input_size)} of each frame; the bars {kept}"


def _depth_line(result, compare: bool = False) -> str | None:
    """Bits and HDR, where the input has more than 8 bits a component or is HDR; None otherwise (``compare``: the run
    was ``--compare``'s, which carries no fine bits)."""
    if result.input_bits <= 8 and result.hdr is None and not result.tonemap:
        return None
    hdr = f"{result.hdr} HDR kept (BT.2020, tagged as the input); " if result.hdr else ""
    hdr = f"{result.tonemap}; " if result.tonemap else hdr
    if result.fine_bits:
        how = "the levels below the model's 8 carried into it"
    elif result.output_bits > 8:
        how = "the model's 8 bits widened (" + ("--compare shows them" if compare else "--no-fine-bits") + ")"
    else:
        how = "an 8-bit output (--pix-fmt yuv420p10le keeps more)"
    return f"{hdr}{result.input_bits}-bit input -> {result.output_bits}-bit output: {how}"


def _scene_cuts_line(cuts: tuple[int, ...], shown: int = 8) -> str:
    """The frames where shots started (the first few of a long list; --json has them all)."""
    frames = ", ".join(map(str, cuts[:shown])) + (f", ... ({len(cuts) - shown} more)" if len(cuts) > shown else "")
    plural = "s" if len(cuts) != 1 else ""
    return f"{len(cuts)} scene cut{plural}: the windows started afresh at frame{plural} {frames}"


def _warmup_line(result) -> str | None:
    """Where the first window's one-off warm-up took a fifth of the run or more (short clips, GPU backends
    compiling kernels and capturing graphs): the pace after it, which longer clips approach. Only where it is one:
    the run after the first window clearly faster than the whole (else there was no warm-up), and, with several
    windows in flight, at least four rounds of them after the first (the next ones ran during it: after the first of
    two windows in flight, the pace says nothing)."""
    steady = result.steady_fps
    if steady is None or result.first_window_seconds < 0.2 * result.seconds:
        return None
    later = result.frames - result.resumed_frames - result.first_window_frames
    if result.concurrency > 1 and later < 4 * result.concurrency * max(result.first_window_frames, 1):
        return None
    if steady < 1.2 * result.fps:
        return None
    return (f"after the first window: {steady:.2f} fps (the first took {result.first_window_seconds:.1f} s: "
            "the backend's warm-up, once per process and input size)")


def _stages_line(result, codec: str, stdout: bool = False) -> str:
    """``busy: decode 4%, inference 58%, encode 97% -> encode-bound ...``: which stage set the pace."""
    use = result.utilisation
    if not use:
        return "busy: not measured"
    parts = ", ".join(f"{_STAGE_NAMES[k]} {100 * v:.0f}%" for k, v in use.items())
    line = f"busy: {parts} of the wall time -> {_STAGE_NAMES[result.bottleneck]}-bound"
    if result.bottleneck == "encode" and stdout:
        line += " (writing includes waiting for the program reading standard output)"
    elif result.bottleneck == "encode" and codec in ("libx264", "libx265", "libx264rgb"):
        line += " (a faster --preset, e.g. veryfast, encodes faster at a larger file size)"
    elif result.bottleneck == "infer" and result.concurrency == 1 and "triton" in result.backend:
        line += " (--concurrency 4 keeps more windows in flight on the server)"
    return line


def int_list(text: str, flag: str) -> tuple[int, ...]:
    """``--concurrency 1,2,4``'s values (also the benchmark scripts' lists); ``ConfigError`` naming ``flag``."""
    from vggx.errors import ConfigError

    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} needs at least one value")
    return values


@app.command()
@handle_errors
def bench(
    ctx: typer.Context,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="onnxruntime | torch | tensorrt | triton (default: onnxruntime; triton with --url)")
    ] = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", help="several backends side by side, interleaved, e.g. onnxruntime,torch")] = None,
    lr_size: Annotated[str, typer.Option("--lr-size", help="LR frame size HxW")] = "180x320",
    window: Annotated[int | None, typer.Option(
        "--window", help="check that the model's window is T (it does not change it)")] = None,
    batch: Annotated[int, typer.Option("--batch", help="windows per request (N)")] = 1,
    concurrency: Annotated[str, typer.Option("--concurrency", help="requests in flight, e.g. 1,2,4,8")] = "1",
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
    ssl: SslOpt = False,
    ca_cert: CaCertOpt = None,
    header: HeaderOpt = None,
    client_cert: ClientCertOpt = None,
    client_key: ClientKeyOpt = None,
    api_key: ApiKeyOpt = None,
    model: Annotated[str, typer.Option("--model", help="the served model to measure (with --url)")] = "vggx",
    model_version: Annotated[str, typer.Option("--model-version", help="with --url: its version (default: newest)")
                             ] = "",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N (in-process backends)")] = "cpu",
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 (torch backend on cuda)")] = False,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the model (torch backend on cuda): about 2x faster on an H200 after "
        "a one-off compilation per input shape (about a minute; cached on disk for later runs)")] = False,
    checkpoint: CheckpointOpt = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads of in-process backends")
                       ] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="warm-up requests per worker")] = 2,
    windows: Annotated[int, typer.Option("--windows", help="measurement windows (spread = stability)")] = 3,
    seconds: Annotated[float, typer.Option("--seconds", help="length of a measurement window")] = 5.0,
    requests: Annotated[int | None, typer.Option(
        "--requests", help="measure windows by request count instead of --seconds")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="write all results as JSON")] = None,
) -> None:
    """Throughput (frames/s, MP/s), latency p50/p90/p99, FLOP/s vs peak, per backend and concurrency.

    Example: vggx bench --compare onnxruntime,torch --lr-size 90x160 --concurrency 1,2
    """
    check_json_path(json_path)
    from vggx.benchmarks.bench import BenchConfig, run_bench
    from vggx.client import Backend, BackendConfig
    from vggx.errors import ConfigError
    from vggx.shapes import parse_size

    choices = {b.value: b for b in Backend}
    url = ",".join(url) if url else None
    if compare and backend:
        raise ConfigError("--backend and --compare: name every backend in --compare (the first is the baseline)")
    if requests is not None and getattr(ctx.get_parameter_source("seconds"), "name", "") == "COMMANDLINE":
        raise ConfigError("--seconds and --requests: a window is measured by one of them")
    names = [n.strip() for n in compare.split(",")] if compare else [backend or ("triton" if url else "onnxruntime")]
    for n in names:
        if n not in choices:
            raise ConfigError(f"backend must be one of {', '.join(choices)}, got {n!r}")
    if url and "triton" not in names:  # --url names the server of the triton backend
        raise ConfigError(f"--url sends work to Triton; it cannot be combined with --backend {names[0]}"
                          if len(names) == 1 else "--url sends work to Triton: add triton to --compare")
    for flag, on in (("--fp16", fp16), ("--compile", compile_model)):
        if on and "torch" not in names:
            raise ConfigError(f"{flag} applies to the torch backend (on --device cuda); none of "
                              f"{', '.join(names)} takes it")
    if (model != "vggx" or model_version) and "triton" not in names:
        raise ConfigError(f"--model/--model-version name a model Triton serves; they apply with --url, not "
                          f"--backend {names[0]}" if len(names) == 1 else "--model/--model-version name a model "
                          "Triton serves: add triton to --compare")
    triton = _triton_options(url, protocol, ssl, ca_cert, header, client_cert, client_key, api_key)
    backends = tuple(
        # --checkpoint is the in-process backends' (a Triton alone refuses it: it serves what was exported)
        BackendConfig(backend=choices[n], checkpoint=checkpoint if n != "triton" or len(names) == 1 else None,
                      # Triton alone: BackendConfig refuses a --device (the server picks its own)
                      device=device if n != "triton" or len(names) == 1 else "cpu", fp16=fp16 and n == "torch",
                      compile=compile_model and n == "torch",
                      # beside in-process backends --threads is theirs; with Triton alone BackendConfig refuses it
                      threads=None if n == "triton" and len(names) > 1 else threads,
                      url=url if n == "triton" else None,
                      **({"model_name": model, "model_version": model_version, **triton} if n == "triton"
                         else {"protocol": triton["protocol"]}))
        for n in names
    )
    cfg = BenchConfig(backends=backends, lr_size=parse_size(lr_size, "--lr-size"), batch=batch,
                      concurrency=int_list(concurrency, "--concurrency"), warmup=warmup, windows=windows,
                      window_seconds=seconds, window_requests=requests, window=window)
    def row(p) -> None:
        err_console.print(f"measured {p.backend} at concurrency {p.concurrency}: {p.frames_per_s:.2f} frames/s",
                          highlight=False)

    result = run_bench(cfg, on_point=row)
    # the measurement first: a reader that stopped reading (`| head`) ended the command before it was written (and
    # where it cannot be written, the table is still printed before the error)
    try:
        write_json(json_path, {"command": _command_line(ctx), **result.as_dict()})
        unwritten = None
    except ConfigError as exc:
        unwritten = exc
    _print_bench(result.points, f"vggx bench — LR {lr_size}, batch {batch}")
    console.print("frames/s counts every frame a window returns (N × T); `vggx upscale` keeps the centre half of "
                  "each window (the default --context), so a video goes at about half that", highlight=False,
                  markup=False)
    peaks = dict.fromkeys((p.peak_gflops, p.peak_source) for p in result.points if p.peak_gflops == p.peak_gflops)
    for peak, source in peaks:  # which peak the percentages are of (a CPU's is measured now: it moves with load)
        console.print(f"% of peak: of {peak:.0f} GFLOP/s, {source}", highlight=False, markup=False)
    for p in result.points:
        if p.errors:  # counted, as perf_analyzer counts them: a server shedding load, a backend failing some requests
            err_console.print(f"[yellow]warning:[/] {escape(p.backend)} at concurrency {p.concurrency}: {p.errors} of "
                              f"{p.requests + p.errors} requests failed (left out of throughput and latency)",
                              highlight=False)
    if any(not p.throughput.stable for p in result.points):
        longer = "raise --requests" if requests is not None else "lengthen --seconds"
        err_console.print("[yellow]warning:[/] some runs were unstable (window spread above "
                          f"{100 * cfg.max_spread:.0f}%): {longer} or quiet the machine")
    if unwritten is not None:
        raise unwritten


def _bench_cells(p, compared: bool) -> dict[str, str]:
    """One measured point's cells (rich markup), by column (the ratio where several backends were measured)."""
    pct = 100 * p.achieved_gflops / p.peak_gflops if p.peak_gflops == p.peak_gflops else float("nan")
    server = ""
    if p.server:
        server = f" [q {p.server['queue_us'] / 1e3:.1f} / infer {p.server['compute_infer_us'] / 1e3:.1f} ms]"
    cells = {
        "backend": escape(p.description + server), "conc": str(p.concurrency), "frames/s": f"{p.frames_per_s:.2f}",
        "MP/s": f"{p.mpix_per_s:.1f}", "p50 ms": f"{p.latency.p50_ms:.1f}", "p90 ms": f"{p.latency.p90_ms:.1f}",
        "p99 ms": f"{p.latency.p99_ms:.1f}",
        "GFLOP/s (% peak)": f"{p.achieved_gflops:.0f} ({pct:.0f}%)" if pct == pct else f"{p.achieved_gflops:.0f}",
        "spread": f"{100 * p.throughput.spread:.0f}%" + ("" if p.throughput.stable else " [yellow]unstable[/]"),
    }
    if compared:
        cells["ratio"] = f"{p.ratio:.2f}x" if p.ratio else "-"
    return cells


def _print_bench(points, title: str) -> None:
    """`vggx bench`'s results: a table a row a point where the console is wide enough for one without wrapping
    numbers, else a short block a point (a terminal of 80 columns, a log: standard output piped is 80 wide)."""
    from rich.cells import cell_len
    from rich.text import Text

    if not points:
        return
    compared = len({(p.backend, p.description) for p in points}) > 1
    cells = [_bench_cells(p, compared) for p in points]
    table = Table(title=escape(title))
    for col in cells[0]:
        if col == "backend":
            table.add_column(col, min_width=20, overflow="fold")
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for c in cells:
        table.add_row(*c.values())

    def width(col: str) -> int:  # the column's widest line, headers included
        return max(cell_len(col), *(Text.from_markup(c[col]).cell_len for c in cells))

    if sum(20 if col == "backend" else width(col) for col in cells[0]) + 3 * len(cells[0]) + 1 <= console.width:
        console.print(table)
        return
    console.print(f"[bold]{escape(title)}[/]")
    for p, c in zip(points, cells, strict=True):
        peak = f" ({100 * p.achieved_gflops / p.peak_gflops:.0f}% of peak)" if p.peak_gflops == p.peak_gflops else ""
        console.print(f"{c['backend']}, concurrency {c['conc']}\n"
                      f"  {c['frames/s']} frames/s · {c['MP/s']} MP/s" + (f" · ratio {c['ratio']}" if compared else "")
                      + "\n"
                      f"  latency p50 {c['p50 ms']} · p90 {c['p90 ms']} · p99 {c['p99 ms']} ms\n"
                      f"  {p.achieved_gflops:.0f} GFLOP/s{peak} · spread {c['spread']}",
                      highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def export(
    checkpoint: CheckpointOpt = None,
    repo: Annotated[Path, typer.Option("--repo", "--model-repository", help="Triton model repository")] = Path(
        "model_repository"),
    backend: Annotated[str | None, typer.Option(
        "--backend", help="tensorrt, onnxruntime, python or torch (PyTorch on the GPU serving the checkpoint) "
        "(default: tensorrt with --fp16, else onnxruntime)")] = None,
    flavor: Annotated[str | None, typer.Option(
        "--flavor", help="trt (plugin nodes) or portable (standard ops) (default: trt for tensorrt)")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 graph with FP32 islands + FP16 TensorRT engine")] = False,
    window: Annotated[int | None, typer.Option("--window", help="frames per window T (default: checkpoint)")] = None,
    min_size: Annotated[str | None, typer.Option("--min-size", help="smallest LR HxW (default: the model's)")] = None,
    opt_size: Annotated[str | None, typer.Option(
        "--opt-size", help="LR HxW the TensorRT engine is tuned for (default: 180x320, within the sizes)")] = None,
    max_size: Annotated[str | None, typer.Option(
        "--max-size", help="largest LR HxW (default: the model's; for a TensorRT engine the largest usual size whose "
        "activations at --max-batch fit 16 GiB, e.g. 360x640 for the tiny model: larger frames are tiled)")] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="windows per batch (Triton, engine)")] = 4,
    version: Annotated[int | None, typer.Option("--version", help="version folder (default: next free)")] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite the version / an engine of another GPU")] = False,
    no_plugins: Annotated[bool, typer.Option(
        "--no-plugins", help="TensorRT without the vggx plugins (native GridSample, attention)")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="check ONNX Runtime vs PyTorch")] = True,
    opt_level: Annotated[int | None, typer.Option(
        "--opt-level", help="TensorRT builder optimisation level 0-5 (default: 3)")] = None,
    workspace_mib: Annotated[int | None, typer.Option(
        "--workspace-mib", help="TensorRT workspace limit, MiB (default: 4096)")] = None,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="--backend torch: torch.compile the served model on GPU instances")] = False,
    name: Annotated[str, typer.Option(
        "--name", help="the served model's name, its folder in the repository (several models side by side: "
        "vggx-tiny, vggx-base; clients pass --model)")] = "vggx",
    instances: Annotated[int, typer.Option(
        "--instances", help="model instances per GPU (or on the CPU, --backend python): two let one copy data "
        "while the other computes")] = 1,
    gpus: Annotated[str | None, typer.Option(
        "--gpus", help="GPU indices the instances run on, e.g. 0,1 (default: every GPU the server sees)")] = None,
    instance_kind: Annotated[str | None, typer.Option(
        "--instance-kind", help="gpu or cpu: where the instances run (default: the backend's, see the README; cpu "
        "serves --backend onnxruntime from a Triton without GPUs)")] = None,
    queue_delay_us: Annotated[int, typer.Option(
        "--queue-delay-us", help="dynamic batching: how long a window may wait for others to batch with, in "
        "microseconds")] = 500,
    max_queue_size: Annotated[int, typer.Option(
        "--max-queue-size", help="dynamic batching: requests queued before the next is turned away (0: no bound); "
        "clients retry a refusal and move a pool's windows to other replicas")] = 0,
    trt_accelerator: Annotated[bool, typer.Option(
        "--trt-accelerator", help="--backend onnxruntime: run it through ONNX Runtime's TensorRT execution "
        "provider on GPU instances, in the graph's precision (FP16 with --fp16)")] = False,
    cpu_threads: Annotated[int, typer.Option(
        "--cpu-threads", help="--backend python: ONNX Runtime threads per instance (0: its default)")] = 0,
    host_memory_budget: Annotated[str, typer.Option(
        "--host-memory-budget", help="--backend python (or torch on CPU instances): host memory the instances' "
        "windows may hold together, e.g. 16GiB (auto: 75% of what is available as they start; off); larger windows "
        "are refused as out of memory, and vggx's client tiles smaller")] = "auto",
    versions_served: Annotated[int, typer.Option(
        "--versions-served", help="serve the newest N version folders (a canary beside the current one; clients "
        "pick with --model-version)")] = 1,
) -> None:
    """Export a checkpoint to ONNX (and a TensorRT FP16 engine) into the Triton model repository.

    Example: vggx export --fp16 --max-size 540x960 --max-batch 2
    """
    from vggx.errors import ConfigError
    from vggx.export.onnx import Flavor, Precision
    from vggx.export.pipeline import ExportJob, export_to_repository
    from vggx.export.repository import Backend, ServingConfig
    from vggx.shapes import parse_size

    chosen = Backend.parse(backend) if backend else (Backend.TENSORRT if fp16 else Backend.ONNXRUNTIME)
    if no_plugins and flavor == "trt":
        raise ConfigError("--no-plugins exports the portable graph; it contradicts --flavor trt")
    if no_plugins and chosen in (Backend.PYTHON, Backend.ONNXRUNTIME):  # a knob that does nothing there is refused
        raise ConfigError(f"--no-plugins builds the TensorRT engine without vggx's plugins; --backend {chosen.value} "
                          f"serves the portable graph (standard ONNX ops) already")
    try:
        picked = Flavor.PORTABLE if no_plugins else (Flavor(flavor) if flavor else None)
    except ValueError:
        raise ConfigError(f"--flavor must be trt or portable, got {flavor!r}") from None
    size = lambda text, flag: parse_size(text, flag) if text else None
    if instance_kind is not None and instance_kind not in ("gpu", "cpu"):
        raise ConfigError(f"--instance-kind must be gpu or cpu, got {instance_kind!r}")
    serving = ServingConfig(instances=instances, gpus=_gpu_list(gpus) if gpus else (), queue_delay_us=queue_delay_us,
                            max_queue_size=max_queue_size,
                            trt_accelerator=trt_accelerator, cpu_threads=cpu_threads, versions_served=versions_served,
                            host_memory_budget=host_memory_budget,
                            instance_kind=f"KIND_{instance_kind.upper()}" if instance_kind else None)
    job = ExportJob(
        checkpoint=checkpoint, repo=repo, backend=chosen, flavor=picked,
        precision=Precision.FP16 if fp16 else Precision.FP32, window=window,
        min_size=size(min_size, "--min-size"), opt_size=size(opt_size, "--opt-size"),
        max_size=size(max_size, "--max-size"), max_batch=max_batch, version=version, force=force,
        verify=verify, optimization_level=opt_level, workspace_mib=workspace_mib, compile=compile_model,
        serving=serving, name=name,
    )
    result = export_to_repository(job)
    if chosen is Backend.TORCH:
        how = ("FP32 reference ops on CPU instances" if serving.instance_kind == "KIND_CPU" else
               f"FP16 + vggx kernels + CUDA graphs on GPU instances{', compiled' if compile_model else ''}")
        console.print(f"wrote {result.version_dir} (torch: the checkpoint, {how})", highlight=False, markup=False,
                      soft_wrap=True)
        return
    for r in result.parity:
        console.print(f"parity {r}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"wrote {result.version_dir} ({chosen.value}, {job.resolved_flavor.value}, "
                  f"{job.precision.value})", highlight=False, markup=False)
    if result.profile is not None:
        from vggx.shapes import format_size as fmt

        p = result.profile
        console.print(f"engine profile: up to {p.max_batch} windows of {p.window} frames, {fmt(p.min_size)} .. "
                      f"{fmt(p.max_size)} (tuned for {fmt(p.opt_size)}), about {result.activations / 2**30:.1f} GiB "
                      f"of activations at its max; larger frames are tiled", highlight=False, markup=False,
                      soft_wrap=True)
    if result.engine is not None:
        console.print(f"engine: {result.engine}", highlight=False, markup=False)
    if result.engine_pending is not None:
        console.print(f"{result.engine_unavailable or 'TensorRT is not installed here'}, so no engine was built; "
                      "the ONNX and config.pbtxt are written. Build the engine where TensorRT and a GPU are (e.g. "
                      "inside the NGC Triton container, with vggx\\[gpu] installed):", highlight=False, soft_wrap=True)
        console.print(f"  {result.engine_pending}", highlight=False, soft_wrap=True, markup=False)


def _triton_options(url: str | None, protocol: str | None, ssl: bool, ca_cert: Path | None,
                    headers: list[str] | None, client_cert: Path | None = None, client_key: Path | None = None,
                    api_key: str | None = None) -> dict:
    """The Triton client's protocol, TLS and headers from ``--url``'s scheme (``https://``, ``grpcs://``),
    ``--protocol``, ``--ssl``, ``--ca-cert``, ``--header 'Name: value'`` and ``--api-key`` (BackendConfig's keyword
    arguments)."""
    from vggx.client import TritonProtocol
    from vggx.client.triton import url_schemes
    from vggx.errors import ConfigError

    if protocol is not None and protocol not in ("grpc", "http"):
        raise ConfigError(f"--protocol must be grpc or http, got {protocol!r}")
    if protocol is not None and not url:  # like --ssl and --header: nothing here would speak it
        raise ConfigError("--protocol picks how to talk to a Triton server; it applies with --url")
    if api_key is not None and not url:
        if api_key == os.environ.get("VGGX_API_KEY"):
            api_key = None  # VGGX_API_KEY kept in a shell for the server's clients: nothing to send it to here
        else:
            raise ConfigError("--api-key is the key of a `vggx serve --api-key` server; it applies with --url")
    if not url:
        given = [flag for flag, value in (("--ssl", ssl), ("--ca-cert", ca_cert), ("--header", headers),
                                          ("--client-cert", client_cert), ("--client-key", client_key)) if value]
        if given:
            raise ConfigError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a Triton server: "
                              f"with --url")
    said = url_schemes(url) if url else None
    if said is not None:
        if protocol is not None and protocol != said[0]:
            raise ConfigError(f"--protocol {protocol} disagrees with --url's scheme ({said[0]}); give one")
        protocol, ssl = said[0], said[1] or ssl
    pairs = []
    for h in headers or []:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise ConfigError(f"--header must be 'Name: value', got {h!r}")
        # gRPC and HTTP refuse it (HTTP allows a TAB): a setting, not a retry
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value.strip()):
            # the value is not shown: it is often a secret (Authorization)
            raise ConfigError(f"--header {name.strip()}: its value holds a line break or another control character; "
                              f"a header value is one line of text")
        pairs.append((name.strip(), value.strip()))
    if api_key is not None:
        from vggx.server import API_KEY_HEADER, check_api_key

        pairs.append((API_KEY_HEADER, check_api_key(api_key)))
    if (client_cert is None) != (client_key is None):
        raise ConfigError("--client-cert and --client-key go together (mutual TLS: the certificate and its key)")
    if ssl:
        _check_tls_files(ca_cert, client_cert, client_key)
    if url and not _state["debug"]:  # gRPC's C core logs its own 'E1129 ...' lines on stderr beside vggx's one line
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # read when grpc is first imported: not yet
    return {"protocol": TritonProtocol(protocol or "grpc"), "ssl": ssl, "ca_cert": ca_cert, "headers": tuple(pairs),
            "client_cert": (client_cert, client_key) if client_cert is not None else None}


class _Encrypted(Exception):
    pass


def _check_tls_files(ca_cert: Path | None, client_cert: Path | None, client_key: Path | None) -> None:
    """``--ca-cert`` / ``--client-cert`` / ``--client-key`` loaded now, as the client will (PEM): a file that is not
    one is a ``ConfigError`` (exit 1), not a TLS handshake that fails as an unreachable server (75: retried). A
    missing file is left to the client's own message."""
    import re
    import ssl

    from vggx.errors import ConfigError

    def reason(exc: ssl.SSLError) -> str:
        if exc.reason:
            return exc.reason.lower().replace("_", " ")
        return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(exc)) or "unreadable"

    def load_ca(flag: str, path: Path) -> None:
        try:
            ssl.create_default_context(cafile=str(path))
        except ssl.SSLError as exc:
            raise ConfigError(f"{flag} {path} is not a PEM certificate ({reason(exc)})") from None
        except OSError as exc:
            raise ConfigError(f"{flag} {path} cannot be read ({exc.strerror or exc})") from None

    if ca_cert is not None and ca_cert.is_file():
        load_ca("--ca-cert", ca_cert)
    if client_cert is not None and client_key is not None and client_cert.is_file() and client_key.is_file():
        load_ca("--client-cert", client_cert)

        def encrypted():  # never prompt for a passphrase: an encrypted key is PEM, passed on as given
            raise _Encrypted

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(client_cert), str(client_key),
                                                                    password=encrypted)
        except _Encrypted:
            pass
        except ssl.SSLError as exc:
            if "MISMATCH" in (exc.reason or ""):
                raise ConfigError(f"--client-key {client_key} is not the key of --client-cert {client_cert}") from None
            why = "" if reason(exc) == "PEM lib" else f" ({reason(exc)})"  # OpenSSL's "PEM lib" says nothing more
            raise ConfigError(f"--client-key {client_key} is not a PEM private key{why}") from None
        except OSError as exc:
            raise ConfigError(f"--client-key {client_key} cannot be read ({exc.strerror or exc})") from None


def _gpu_list(text: str) -> tuple[int, ...]:
    """``--gpus 0,1`` -> ``(0, 1)``."""
    from vggx.errors import ConfigError

    try:
        return tuple(int(g) for g in text.split(","))
    except ValueError:
        raise ConfigError(f"--gpus must be GPU indices separated by commas (e.g. 0,1), got {text!r}") from None


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # pragma: no cover - e.g. `vggx info | head`
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C while Typer builds the commands, before a command's handle_errors
        if _state["debug"]:
            raise
        _error_line("interrupted")
        sys.exit(130)
    except SystemExit as exc:
        # Ctrl-C while Typer parses the command line or runs the callback: Typer exits 130 saying nothing (an
        # Exit(130) raised from the KeyboardInterrupt); handle_errors' own Exit(130) has said it already. With
        # --debug, handle_errors re-raises a command's Ctrl-C or SIGTERM, which Typer turns into that same silent
        # exit: the interrupt's traceback is shown, as --debug says, and the exit code stays the documented one (an
        # uncaught Terminated would exit 1, not SIGTERM's 143)
        interrupt = getattr(exc.__context__, "__cause__", None)
        if exc.code == 130 and isinstance(interrupt, KeyboardInterrupt):
            if _state["debug"]:
                import traceback

                from vggx.server import Terminated

                traceback.print_exception(interrupt)
                sys.exit(143 if isinstance(interrupt, Terminated) else 130)
            _error_line("interrupted")
        raise


if __name__ == "__main__":
    main()
