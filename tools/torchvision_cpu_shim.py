"""Lets torchvision's pure-Python parts import beside the CPU-only torch wheel.

The package registries reachable here carry torchvision only as CUDA builds, whose compiled
extension cannot load next to torch's CPU build. torchvision then fails at import because it
registers fake kernels for ``torchvision::nms``/``qnms`` that the extension would have defined.
`make install` copies this file into the virtual environment (with a one-line ``.pth`` that
imports it) *only* when ``import torchvision`` fails there. It defines those two op schemas the
first time torchvision is imported, so timm and torchvision's transforms work; the detection ops
themselves stay unavailable, and pela never calls them. Users with a matching torchvision never
get this file.
"""

import importlib.abc
import sys


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        for name in ("nms", "qnms"):
            try:
                torch.library.define(f"torchvision::{name}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:  # already defined: the real extension loaded after all
                pass
        return None  # let the normal finders import torchvision


sys.meta_path.insert(0, _DefineTorchvisionOps())
