"""OpenAI Triton, imported lazily: the package imports (and the references run) without it.

A kernel is kept as its plain Python function and wrapped on demand, whatever ``TRITON_INTERPRET``
said when this module was imported:

- CUDA tensors launch the compiled ``JITFunction``;
- CPU tensors launch Triton's interpreter (``InterpretedFunction``), which is how the kernels are
  tested on machines without a GPU;
- the TensorRT AOT path compiles the ``JITFunction`` for a CUDA target, which needs no GPU.

A kernel may call plain Python helper functions named in ``helpers``: each form of the kernel sees them
wrapped like itself (a compiled kernel can call only ``JITFunction`` helpers, which it inlines; an
interpreted one only ``InterpretedFunction`` helpers), so one helper serves several kernels in both forms.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

from vggx.errors import PluginError

__all__ = ["TritonKernel", "compiler_usable", "require_triton", "triton_available"]


@functools.cache
def triton_available() -> bool:
    """True when ``import triton`` would succeed (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def require_triton() -> None:
    """Raise :class:`PluginError` naming the extra to install when Triton is missing."""
    if not triton_available():
        raise PluginError("OpenAI Triton is not installed: pip install 'vggx[kernels]' (needs triton>=3.3)")


def compiler_usable() -> bool:
    """True when Triton can compile kernels for CUDA in this process.

    Not so when ``TRITON_INTERPRET=1`` was set as Triton was imported: its ``@jit`` library
    functions (``tl.sum``'s combiner, ...) were then built as interpreter functions, which the
    compiler cannot inline.
    """
    require_triton()
    import triton.language as tl
    from triton.runtime.jit import JITFunction

    return isinstance(tl.standard._sum_combine, JITFunction)


class TritonKernel:
    """A ``@triton.jit``-able function with its compiled and interpreted forms built on first use."""

    def __init__(self, fn: Callable[..., None], specialize: bool = True,
                 helpers: tuple[Callable[..., Any], ...] = ()) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.specialize = specialize
        self.helpers = helpers
        self._jit: Any = None
        self._interpreted: Any = None

    def jit(self) -> Any:
        """The ``triton.runtime.JITFunction`` (GPU launches and AOT compilation).

        With ``specialize=False`` its launches do not specialise on argument values (integers divisible by
        16, 16-byte-aligned pointers): the code the TensorRT plugin's AOT PTX has (dynamic shapes), for
        timing it beside the specialised kernel with the same launcher.
        """
        if self._jit is None:
            require_triton()
            import inspect

            from triton.runtime.jit import JITFunction

            runtime = [name for name, p in inspect.signature(self.fn).parameters.items()
                       if p.annotation is inspect.Parameter.empty]  # not the constexprs
            params = [] if self.specialize else runtime
            self._jit = JITFunction(self._with_helpers(JITFunction), do_not_specialize=params,
                                    do_not_specialize_on_alignment=params)
        return self._jit

    def ast_source(self, signature: dict[str, str], constexprs: dict[str, Any],
                   attrs: dict[tuple[int, ...], Any] | None = None) -> Any:
        """The ``triton.compiler.ASTSource`` of :meth:`jit` for ``triton.compile`` (AOT compilation, no GPU needed).

        ``signature`` gives the run-time parameters' types (``"*fp16"``, ``"i32"``), ``constexprs`` the
        compile-time values and ``attrs`` Triton's argument attributes (``tt.divisibility``). A constexpr left
        out gets its default here: Triton up to 3.6 applied the defaults of the parameters an ``ASTSource``
        does not name, but 3.7 and later fail on them ("'NoneType' object has no attribute '_unflatten_ir'"),
        since a launch always binds every parameter.
        """
        import inspect

        import triton

        values = dict(constexprs)
        for name, param in inspect.signature(self.fn).parameters.items():
            if name not in signature and name not in values and param.default is not inspect.Parameter.empty:
                values[name] = param.default
        signature = {**signature, **dict.fromkeys(values, "constexpr")}
        return triton.compiler.ASTSource(fn=self.jit(), signature=signature, constexprs=values, attrs=attrs)

    def interpreted(self) -> Any:
        """The ``InterpretedFunction`` (runs on CPU tensors, numpy semantics)."""
        if self._interpreted is None:
            require_triton()
            from triton.runtime.interpreter import InterpretedFunction

            self._interpreted = InterpretedFunction(self._with_helpers(InterpretedFunction))
        return self._interpreted

    def _with_helpers(self, wrap: Callable[[Callable[..., Any]], Any]) -> Callable[..., None]:
        """The kernel function seeing each helper wrapped by ``wrap`` (its own globals otherwise unchanged)."""
        if not self.helpers:
            return self.fn
        import types

        fn = self.fn
        scope = {**fn.__globals__, **{h.__name__: wrap(h) for h in self.helpers}}
        copy = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
        for attr in ("__annotations__", "__kwdefaults__", "__module__", "__qualname__", "__doc__"):
            setattr(copy, attr, getattr(fn, attr))
        return copy

    def for_device(self, device: Any) -> Any:
        """The launchable form for tensors on ``device`` (a ``torch.device``)."""
        return self.jit() if device.type == "cuda" else self.interpreted()
