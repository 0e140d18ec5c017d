"""The QDP definitions against a stand-in ``tensorrt.plugin`` (TensorRT cannot be installed here).

The stand-in records what the decorators receive and gives symbolic shape expressions, so these
tests check what TensorRT itself would check at registration (argument schemas, live annotation
classes, the aot_impl return annotation) and what the AOT implementations return: PTX of the
right kernel, symbolic grid, block, and the int32 scalars in kernel order.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
import typing

import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs OpenAI Triton"),
    pytest.mark.usefixtures("cuda_compiler"),
]


class Expr:
    """Symbolic dimension: text, or a build-time constant."""

    def __init__(self, text, value=None):
        self.text, self.value = str(text), value
        self.is_fake = False

    @property
    def is_constant(self):
        return self.value is not None

    def constant_value(self):
        return self.value

    def _op(self, sym, other, fn):
        ov = other.value if isinstance(other, Expr) else other
        text = getattr(other, "text", str(other))
        value = fn(self.value, ov) if self.value is not None and ov is not None else None
        return Expr(f"({self.text}{sym}{text})" if value is None else value, value)

    def __mul__(self, other):
        return self._op("*", other, lambda a, b: a * b)

    def __floordiv__(self, other):
        return self._op("//", other, lambda a, b: a // b)

    def __eq__(self, other):  # compares with the expression's text (or constant)
        return self.text == other if isinstance(other, str) else self.value == getattr(other, "value", other)

    __hash__ = None

    def __repr__(self):
        return f"Expr({self.text!r})"


def _dim(v):
    return Expr(v, v) if isinstance(v, int) else Expr(v)


@pytest.fixture
def fake_trt(monkeypatch):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0.35"
    trt.QuickPluginCreationRequest = types.SimpleNamespace()  # what the AOT API needs (TensorRT >= 10.9)
    trt.float32, trt.float16 = "FP32", "FP16"
    trt.TensorFormat = types.SimpleNamespace(LINEAR="LINEAR", HWC8="HWC8", HWC="HWC")
    trtp = types.ModuleType("tensorrt.plugin")
    registry: dict[tuple[str, str], typing.Any] = {}

    class TensorDesc:
        def __init__(self, shape=(), dtype="FP32", format="LINEAR"):
            self.shape_expr, self.dtype, self.format = tuple(shape), dtype, format

        def like(self):
            return TensorDesc(self.shape_expr, self.dtype, self.format)

    class AutoTuneCombination:
        def __init__(self, spec, layouts="LINEAR", tactics=None):
            self.spec, self.layouts, self.tactics = spec, layouts, None if tactics is None else list(tactics)

    class KernelLaunchParams:
        grid_x = grid_y = grid_z = block_x = shared_mem = None

    class SymExprs(tuple):
        pass

    class SymIntExprs(SymExprs):
        @classmethod
        def from_tuple(cls, values):
            return cls(values)

    def decorator(kind):
        def outer(name):
            def inner(fn):
                registry[(kind, name)] = fn
                return fn

            return inner

        return outer

    trtp.TensorDesc, trtp.AutoTuneCombination = TensorDesc, AutoTuneCombination
    trtp.KernelLaunchParams, trtp.SymExprs, trtp.SymIntExprs = KernelLaunchParams, SymExprs, SymIntExprs
    trtp.SymInt32 = lambda v: v.value if isinstance(v, Expr) and v.is_constant else getattr(v, "text", v)
    trtp.cdiv = lambda a, b: Expr(f"cdiv({getattr(a, 'text', a)},{b})")  # a ShapeExpr, as TensorRT's
    trtp.from_shape_expr = lambda shape, dtype: TensorDesc(shape, dtype)
    trtp.register, trtp.autotune, trtp.aot_impl = (
        decorator("register"),
        decorator("autotune"),
        decorator("aot"),
    )
    trt.plugin = trtp
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    import vggx.plugins.tensorrt as vtrt

    monkeypatch.setattr(vtrt, "device_cc", lambda: 90)
    monkeypatch.setattr(vtrt, "_registered", False)
    monkeypatch.delitem(sys.modules, "vggx.plugins._tensorrt_qdp", raising=False)
    vtrt.register_plugins()
    yield trtp, registry
    sys.modules.pop("vggx.plugins._tensorrt_qdp", None)
    vars(sys.modules["vggx.plugins"]).pop("_tensorrt_qdp", None)


TENSORS = {"vggx::flow_warp": ["x", "flow"], "vggx::temporal_attention": ["qkv"]}
ATTRS = {"vggx::flow_warp": [], "vggx::temporal_attention": ["heads"]}


@pytest.mark.parametrize("name", list(TENSORS))
def test_schemas_are_what_tensorrt_accepts(fake_trt, name):
    trtp, registry = fake_trt
    tensors, attrs = TENSORS[name], ATTRS[name]
    desc = inspect.signature(registry[("register", name)])
    assert list(desc.parameters) == tensors + attrs
    for t in tensors:  # TensorRT checks issubclass(annotation, TensorDesc): strings would fail
        assert desc.parameters[t].annotation is trtp.TensorDesc
    for a in attrs:
        assert desc.parameters[a].annotation is int
    assert desc.return_annotation is trtp.TensorDesc

    tune = inspect.signature(registry[("autotune", name)])
    assert list(tune.parameters) == [*tensors, *attrs, "outputs"]
    assert typing.get_origin(tune.return_annotation) is list
    assert typing.get_args(tune.return_annotation) == (trtp.AutoTuneCombination,)

    aot = inspect.signature(registry[("aot", name)])
    assert list(aot.parameters) == [*tensors, *attrs, "outputs", "tactic"]
    ret = aot.return_annotation
    assert typing.get_origin(ret) is tuple and len(typing.get_args(ret)) == 4
    assert issubclass(typing.get_args(ret)[2], trtp.KernelLaunchParams)
    assert issubclass(typing.get_args(ret)[3], trtp.SymExprs)


def test_flow_warp_descriptor_and_aot(fake_trt):
    trtp, registry = fake_trt
    x = trtp.TensorDesc([_dim("B"), _dim(64), _dim("H"), _dim("W")], "FP16")
    flow = trtp.TensorDesc([_dim("B"), _dim(2), _dim("H"), _dim("W")], "FP32")
    out = registry[("register", "vggx::flow_warp")](x, flow)
    assert out.shape_expr == x.shape_expr and out.dtype == "FP16"
    name, ptx, params, scalars = registry[("aot", "vggx::flow_warp")](x, flow, (out,), 0)
    assert name == b"flow_warp_kernel"
    assert b".entry flow_warp_kernel(" in ptx and b".target sm_90" in ptx
    assert b"ld.global.b16" in ptx and b"ld.global.b32" in ptx  # FP16 features, FP32 flow
    assert params.grid_x == "cdiv((H*W),512)"
    assert params.grid_y.text == "B"
    assert params.grid_z == "cdiv(64,16)"
    assert (params.block_x, params.shared_mem) == (128, 0)
    assert tuple(scalars) == (64, "H", "W")


def test_attention_descriptor_and_aot(fake_trt):
    trtp, registry = fake_trt
    qkv = trtp.TensorDesc([_dim("N"), _dim(8), _dim(192), _dim("H"), _dim("W")], "FP16")
    out = registry[("register", "vggx::temporal_attention")](qkv, 4)
    assert [d.text for d in out.shape_expr] == ["N", "8", "64", "H", "W"]
    name, ptx, params, scalars = registry[("aot", "vggx::temporal_attention")](qkv, 4, (out,), 0)
    assert name == b"temporal_attention_kernel" and b".entry temporal_attention_kernel(" in ptx
    assert params.grid_x == "cdiv((H*W),128)"  # T = 8: one query block, 128 pixels per program
    assert (params.grid_y, params.grid_z.text) == (4, "N")
    assert params.block_x == 128
    assert tuple(scalars) == (8, 64, "(H*W)")


def test_attention_aot_needs_constant_frames(fake_trt):
    from vggx.errors import PluginError

    trtp, registry = fake_trt
    qkv = trtp.TensorDesc([_dim("N"), _dim("T"), _dim(192), _dim("H"), _dim("W")], "FP32")
    with pytest.raises(PluginError, match=r"build-time constant T \(frames\)"):
        registry[("aot", "vggx::temporal_attention")](qkv, 4, (qkv,), 0)
    qkv = trtp.TensorDesc([_dim("N"), _dim(40), _dim(192), _dim("H"), _dim("W")], "FP32")
    with pytest.raises(PluginError, match=r"T must be in 1\.\.32"):
        registry[("aot", "vggx::temporal_attention")](qkv, 4, (qkv,), 0)
    qkv = trtp.TensorDesc([_dim("N"), _dim(8), _dim(49), _dim("H"), _dim("W")], "FP32")  # was taken as C = 16
    with pytest.raises(PluginError, match=r"qkv has 49 channels, not 3 x C"):
        registry[("aot", "vggx::temporal_attention")](qkv, 1, (qkv,), 0)


def test_flow_warp_autotune_offers_channels_last_formats(fake_trt):
    trtp, registry = fake_trt
    x = trtp.TensorDesc([_dim("B"), _dim(64), _dim("H"), _dim("W")], "FP16")
    combos = registry[("autotune", "vggx::flow_warp")](x, x, (x,))
    layouts = {(c.spec, c.layouts) for c in combos}
    assert ("FP16, FP16*FP32, FP16", "HWC8, LINEAR, HWC8") in layouts  # flow always LINEAR
    assert ("FP32, FP32, FP32", "HWC, LINEAR, HWC") in layouts
    assert ("FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR") in layouts


@pytest.mark.parametrize(("fmt", "c", "xs", "dtype"), [("HWC8", 20, 24, "FP16"), ("HWC", 64, 64, "FP32")])
def test_flow_warp_aot_for_channels_last_formats(fake_trt, fmt, c, xs, dtype):
    """HWC8/HWC features: the channels-last kernel, XS = the padded pixel stride, a LINEAR flow's strides."""
    trtp, registry = fake_trt
    x = trtp.TensorDesc([_dim("B"), _dim(c), _dim("H"), _dim("W")], dtype, fmt)
    flow = trtp.TensorDesc([_dim("B"), _dim(2), _dim("H"), _dim("W")], "FP32")
    out = registry[("register", "vggx::flow_warp")](x, flow)
    name, ptx, params, scalars = registry[("aot", "vggx::flow_warp")](x, flow, (out,), 0)
    assert name == b"flow_warp_nhwc_kernel" and b".entry flow_warp_nhwc_kernel(" in ptx
    pixels, threads = (32, 64) if dtype == "FP16" else (64, 128)  # the dtype's shipped geometry
    assert params.grid_x == f"cdiv((H*W),{pixels})" and params.grid_y.text == "B" and params.grid_z == 1
    assert params.block_x == threads
    # The shared memory the compiled kernel asks for (its aligned copy converts layouts through it).
    from vggx.plugins.launch import flow_warp_nhwc_config
    from vggx.plugins.tensorrt import compile_ptx, constexpr_key

    cfg = flow_warp_nhwc_config(1, xs, 1, 1, half=dtype == "FP16")
    fp = {"FP16": "fp16", "FP32": "fp32"}[dtype]
    assert params.shared_mem == compile_ptx("flow_warp_nhwc", fp, constexpr_key(cfg.constexprs, cfg.num_warps), 90,
                                            "fp32").shared_mem
    assert tuple(scalars) == (c, "H", "W", xs, "((H*W)*2)", "(H*W)", 1)


def test_flow_warp_aot_channels_last_needs_constant_channels(fake_trt):
    from vggx.errors import PluginError

    trtp, registry = fake_trt
    x = trtp.TensorDesc([_dim("B"), _dim("C"), _dim("H"), _dim("W")], "FP16", "HWC8")
    with pytest.raises(PluginError, match="flow_warp plugin needs a build-time constant channel count"):
        registry[("aot", "vggx::flow_warp")](x, x, (x,), 0)


def test_attention_aot_forms_by_frames_and_dtype(fake_trt):
    """Up to 16 frames the per-thread form (FP16: 8 queries per program, FP32: 4); above, the tensor-core form."""
    trtp, registry = fake_trt
    qkv = trtp.TensorDesc([_dim("N"), _dim(16), _dim(192), _dim("H"), _dim("W")], "FP16")
    out = registry[("register", "vggx::temporal_attention")](qkv, 4)
    name, ptx, params, scalars = registry[("aot", "vggx::temporal_attention")](qkv, 4, (out,), 0)
    assert name == b"temporal_attention_kernel" and b"mma" not in ptx and b"cp.async" in ptx
    assert (params.grid_x, params.block_x) == ("(cdiv((H*W),128)*2)", 128)  # 128 pixels x 2 blocks of 8 queries
    assert tuple(scalars) == (16, 64, "(H*W)")
    qkv17 = trtp.TensorDesc([_dim("N"), _dim(17), _dim(192), _dim("H"), _dim("W")], "FP16")
    _, ptx17, params17, _ = registry[("aot", "vggx::temporal_attention")](qkv17, 4, (out,), 0)
    assert b"mma" in ptx17  # tensor-core instructions
    assert (params17.grid_x, params17.block_x) == ("cdiv((H*W),16)", 256)  # 16 pixels x all 32 frames, 8 warps
    qkv32 = trtp.TensorDesc([_dim("N"), _dim(16), _dim(192), _dim("H"), _dim("W")], "FP32")
    _, ptx32, params32, _ = registry[("aot", "vggx::temporal_attention")](qkv32, 4, (out,), 0)
    assert b"mma" not in ptx32 and b"cp.async" in ptx32  # per-thread form, its loads pipelined
    assert (params32.grid_x, params32.block_x) == ("(cdiv((H*W),128)*4)", 128)  # 128 pixels x 4 query blocks


def test_custom_tactics_are_offered_and_each_builds(fake_trt):
    """Both plugins advertise custom tactics (TensorRT times them at engine build and keeps the fastest): each
    tactic's AOT implementation returns its own kernel and launch."""
    from vggx.errors import PluginError
    from vggx.plugins.launch import ATTENTION_TACTICS, FLOW_WARP_NHWC_TACTICS, FLOW_WARP_TACTICS

    trtp, registry = fake_trt
    qkv = trtp.TensorDesc([_dim("N"), _dim(16), _dim(192), _dim("H"), _dim("W")], "FP16")
    out = registry[("register", "vggx::temporal_attention")](qkv, 4)
    (combo,) = registry[("autotune", "vggx::temporal_attention")](qkv, 4, (out,))
    assert combo.tactics == list(ATTENTION_TACTICS)
    launches = {}
    for tactic in combo.tactics:
        name, ptx, params, scalars = registry[("aot", "vggx::temporal_attention")](qkv, 4, (out,), tactic)
        assert name == b"temporal_attention_kernel" and tuple(scalars) == (16, 64, "(H*W)")
        launches[tactic] = (params.grid_x, params.block_x, b"mma" in ptx)
    assert launches[1] == ("(cdiv((H*W),128)*2)", 128, False)  # shipped: the per-thread form, 8 queries
    assert launches[2] == ("cdiv((H*W),32)", 256, True)  # the tensor-core form, 32 pixels on 8 warps
    assert launches[3] == ("cdiv((H*W),128)", 256, True)  # a loop over four blocks of 32 pixels per program
    assert launches[4] == ("cdiv((H*W),16)", 128, True)  # the FP32 width: 16 pixels on 4 warps
    assert launches[5] == ("cdiv((H*W),32)", 128, True)  # 32 pixels on 4 warps
    assert launches[6][2] is False  # the per-thread form with FP32's 3 stages
    _, ptx7, _, _ = registry[("aot", "vggx::temporal_attention")](qkv, 4, (out,), 7)
    assert b".maxnreg 128" in ptx7 and b"mma" not in ptx7  # the per-thread form, its registers capped
    assert launches[8][2] is False and launches[9][2] is False  # the per-thread form, unrolled by 2 / by 4
    assert launches[10] == ("(cdiv((H*W),128)*2)", 128, False)  # T = 16: no ragged block, the shipped launch
    with pytest.raises(PluginError, match="unknown tactic 11"):
        registry[("aot", "vggx::temporal_attention")](qkv, 4, (out,), 11)

    x = trtp.TensorDesc([_dim("B"), _dim(64), _dim("H"), _dim("W")], "FP16", "HWC8")
    flow = trtp.TensorDesc([_dim("B"), _dim(2), _dim("H"), _dim("W")], "FP32")
    combos = registry[("autotune", "vggx::flow_warp")](x, flow, (x,))
    assert {c.layouts: c.tactics for c in combos if c.layouts != "LINEAR"} == {
        "HWC8, LINEAR, HWC8": list(FLOW_WARP_NHWC_TACTICS), "HWC, LINEAR, HWC": list(FLOW_WARP_NHWC_TACTICS)}
    assert [c.tactics for c in combos if c.layouts == "LINEAR"] == [list(FLOW_WARP_TACTICS)] * 2
    linear = trtp.TensorDesc([_dim("B"), _dim(64), _dim("H"), _dim("W")], "FP32")
    ptxs = {}
    for tactic in FLOW_WARP_TACTICS:  # the NCHW kernel: the same grid, its channel loop compiled three ways
        name, ptx, params, _ = registry[("aot", "vggx::flow_warp")](linear, linear, (linear,), tactic)
        assert name == b"flow_warp_kernel" and params.grid_x == "cdiv((H*W),512)"
        ptxs[tactic] = ptx
    assert len(set(ptxs.values())) == 3 and b"cp.async" in ptxs[3]  # FP32 gathers pipelined through cp.async
    with pytest.raises(PluginError, match="unknown tactic 4"):
        registry[("aot", "vggx::flow_warp")](linear, linear, (linear,), 4)
    launches = [(p.grid_x, p.block_x) for p in (registry[("aot", "vggx::flow_warp")](x, flow, (x,), tactic)[2]
                                                for tactic in FLOW_WARP_NHWC_TACTICS)]
    # FP16's 2 blocks of 16 pixels on 2 warps, FP32's 4 blocks of 16 on 4 warps, runs 3-9's 32 pixels on 4 warps
    assert launches == [("cdiv((H*W),32)", 64), ("cdiv((H*W),64)", 128), ("cdiv((H*W),32)", 128)]
    with pytest.raises(PluginError, match="unknown tactic 7"):
        registry[("aot", "vggx::flow_warp")](x, flow, (x,), 7)


def test_attention_aot_fits_portable_shared_memory_as_compile_aot_does(fake_trt):
    """The plugin's AOT implementation compiles through the same shared-memory fit as ``compile_aot`` (it called
    ``compile_ptx`` directly before, and handed TensorRT FP32 tactic 3's 56 KiB at T = 16, over the 48 KiB a
    launch gets without opting in): the same PTX and shared memory for every tactic, within 48 KiB."""
    from vggx.plugins.launch import ATTENTION_TACTICS, attention_tactic_tile
    from vggx.plugins.tensorrt import PORTABLE_SHARED_MEM, compile_aot

    trtp, registry = fake_trt
    qkv = trtp.TensorDesc([_dim("N"), _dim(16), _dim(192), _dim("H"), _dim("W")], "FP32")
    out = registry[("register", "vggx::temporal_attention")](qkv, 4)
    for tactic in ATTENTION_TACTICS:
        _, ptx, params, _ = registry[("aot", "vggx::temporal_attention")](qkv, 4, (out,), tactic)
        aot = compile_aot("temporal_attention", (1, 16, 192, 9, 40), "fp32", heads=4,
                          tile=attention_tactic_tile(tactic, 16, 16, False))
        assert (ptx.decode(), params.shared_mem) == (aot.ptx, aot.shared_mem), tactic
        assert 0 < params.shared_mem <= PORTABLE_SHARED_MEM, (tactic, params.shared_mem)


@pytest.mark.parametrize(("fmt", "dtype", "layout"), [("LINEAR", "FP32", "linear"), ("HWC8", "FP16", "hwc8"),
                                                      ("HWC", "FP32", "hwc")])
def test_flow_warp_aot_is_compile_aots_kernel_for_every_tactic(fake_trt, fmt, dtype, layout):
    """The flow_warp plugin's AOT implementation returns, for each tactic and format, the PTX and shared memory
    ``compile_aot`` gives the GPU tests for concrete shapes (the shapes only change the grid)."""
    from vggx.plugins.launch import FLOW_WARP_NHWC_TACTICS, FLOW_WARP_TACTICS
    from vggx.plugins.tensorrt import compile_aot

    trtp, registry = fake_trt
    x = trtp.TensorDesc([_dim("B"), _dim(20), _dim("H"), _dim("W")], dtype, fmt)
    flow = trtp.TensorDesc([_dim("B"), _dim(2), _dim("H"), _dim("W")], "FP32")
    out = registry[("register", "vggx::flow_warp")](x, flow)
    for tactic in FLOW_WARP_TACTICS if fmt == "LINEAR" else FLOW_WARP_NHWC_TACTICS:
        _, ptx, params, _ = registry[("aot", "vggx::flow_warp")](x, flow, (out,), tactic)
        aot = compile_aot("flow_warp", (2, 20, 9, 13), dtype.lower(), flow_dtype="fp32", layout=layout,
                          tactic=tactic)
        assert (ptx.decode(), params.shared_mem, params.block_x) == (aot.ptx, aot.shared_mem, aot.block[0]), tactic
