"""Print the constraints file given (``.ci/constraints.txt``) as this environment's torch can take it: without its
triton pin where that torch requires a triton of its own (PyPI's CUDA builds pin the one they were built with:
torch 2.13.0 asks triton==3.7.1, and pip would resolve the pin against it by swapping in another torch). The pin is
for a torch that requires none (a CPU build), whose triton then matches the GPU machines' image."""

import re
import sys
from importlib import metadata


def torch_pins_triton() -> bool:
    """Whether this environment's torch requires a triton here (its requirement's marker true on this machine: PyPI's
    torch asks one on Linux x86-64 alone)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a fresh venv holds pip, which carries packaging, and torch, which does not need it
        from pip._vendor.packaging.requirements import Requirement
    try:
        required = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return False
    for text in required:
        req = Requirement(text)
        if req.name == "triton" and (req.marker is None or req.marker.evaluate({"extra": ""})):
            return True
    return False


def main(path: str) -> None:
    own = torch_pins_triton()
    with open(path) as f:
        for line in f:
            if not (own and re.match(r"triton\b", line)):
                sys.stdout.write(line)


if __name__ == "__main__":
    main(sys.argv[1])
