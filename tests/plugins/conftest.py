"""Fixtures of the plugin tests.

The kernels run on CPU tensors through Triton's interpreter (the machinery ``TRITON_INTERPRET=1``
switches on): :class:`vggx.plugins._triton.TritonKernel` picks it for CPU tensors whatever the
variable said at import, and ``test_interpret_env.py`` runs them once more in a fresh process with
``TRITON_INTERPRET=1`` exported. The AOT tests compile for CUDA in this process, which needs the
variable unset when Triton is first imported, so it is dropped here if nothing imported Triton yet.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

if "triton" not in sys.modules:
    os.environ.pop("TRITON_INTERPRET", None)

torch.set_num_threads(1)


@pytest.fixture
def cuda_compiler() -> None:
    """Skip (with the reason) where Triton cannot compile for CUDA in this process."""
    from vggx.plugins._triton import compiler_usable, triton_available

    if not triton_available():
        pytest.skip("needs OpenAI Triton")
    if not compiler_usable():
        pytest.skip("TRITON_INTERPRET=1 was set when Triton was imported: run without it for the AOT tests")


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator, so every test draws the same random shapes and values."""
    return torch.Generator().manual_seed(1234)


def pytest_configure(config: pytest.Config) -> None:
    # Triton's interpreter turns 1-element numpy arrays into loop bounds (numpy >= 1.25 warns).
    config.addinivalue_line(
        "filterwarnings", "ignore:Conversion of an array with ndim > 0 to a scalar:DeprecationWarning"
    )
