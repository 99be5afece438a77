"""Peak memory of one eager forward pass on a CPU, where no allocator statistics exist."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary


class _TensorBytes(TorchDispatchMode):
    """The bytes of the tensor storages alive, and the most alive at once: each operator's outputs
    count from when it makes them until they are freed. A CPU has no allocator statistics to ask, as
    CUDA has; this sees what the model holds, not a kernel's scratch space or the C allocator's
    cache."""

    def __init__(self, tensors: list[torch.Tensor]):
        super().__init__()
        # storage -> bytes, forgotten when it is freed
        self.sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.live = self.peak = 0
        self.finalizers: list[weakref.finalize] = []
        for t in tensors:
            self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        if t.layout != torch.strided:  # sparse or nested tensors: no one storage to count
            return
        storage = t.untyped_storage()  # views of one storage count once
        if storage not in self.sizes:
            self.sizes[storage] = n = storage.nbytes()
            self.live += n
            self.peak = max(self.peak, self.live)
            self.finalizers.append(weakref.finalize(storage, self._free, n))

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


def eager_peak_bytes(model: nn.Module, args: tuple, kwargs: dict) -> int:
    """Bytes of the tensors live at once during one eager forward pass: weights, inputs and the
    largest set of activations, which is what ``torch.cuda.max_memory_allocated`` reports on a
    GPU."""
    tensors = [
        *model.parameters(),
        *model.buffers(),
        *(t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)),
    ]
    counter = _TensorBytes(tensors)
    with torch.inference_mode(), counter:
        model(*args, **kwargs)
    for f in counter.finalizers:  # the weights outlive the count: leave nothing attached to them
        f.detach()
    return counter.peak
