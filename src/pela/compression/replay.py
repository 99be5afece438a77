"""Running a model again from one block on: what a sensitivity probe needs, without the blocks
before it.

A sensitivity probe perturbs one layer and measures how every block's output moves. The blocks
before that layer's block, the embeddings and the head are not affected, so running the whole model
again for every layer wastes most of the work (a 12-block model probed layer by layer ran each block
about twice as often as needed, and its output layer every time). `BlockCalls` records each block
call of a reference pass: its inputs, keyword arguments and output. `replay` then runs only the
calls from the perturbed block on, each fed the previous call's new output, where the recorded pass
shows that each block reads the previous one's output; where it does not (a downsampling between
stages, a decoder reading the encoder), it says so and the caller runs the whole model instead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from pela import arch


@dataclass
class Call:
    """One call of a block in a recorded forward pass."""

    name: str
    module: nn.Module
    args: tuple
    kwargs: dict[str, Any]
    output: torch.Tensor  # the hidden states it returned (`arch.block_output`)


def hidden_of(call: Call) -> torch.Tensor | None:
    """The hidden states a block call read: its first positional argument, or ``hidden_states``."""
    first = call.args[0] if call.args else call.kwargs.get("hidden_states")
    return first if torch.is_tensor(first) else None


class _Recorded(Exception):
    """Raised by `BlockCalls` once the calls asked for are recorded."""


class BlockCalls:
    """Records every call of the named blocks, in order, while `record` runs a forward pass."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        self.names = names
        self.calls: list[Call] = []
        self.recording = False
        self.handles = []
        for name in names:
            module = modules[name]
            self.handles.append(module.register_forward_hook(self._hook(name), with_kwargs=True))
        # runs after every block: a pass stops before its logits
        head = arch.vocabulary_head(model) if names else None
        if head is not None:
            self.handles.append(head.register_forward_pre_hook(self._stop))

    def _stop(self, module: nn.Module, args: Any) -> None:
        if self.recording:
            raise _Recorded

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
            if self.recording:
                call = Call(name, module, args, dict(kwargs), arch.block_output(output))
                previous = self.calls[-1] if self.calls else None
                self.linked.append(previous is not None and _reads(call, previous.output))
                # its output was all the next call needed of it
                if previous is not None and not self.keep_outputs:
                    self.calls[-1] = Call(
                        previous.name, previous.module, previous.args, previous.kwargs, None
                    )
                self.calls.append(call)
                if self.stop_after is not None and len(self.calls) >= self.stop_after:
                    # the rest of the pass (a language model's logits) is not needed
                    raise _Recorded

        return hook

    def record(
        self, run: Callable[[], Any], stop_after: int | None = None, keep_outputs: bool = True
    ) -> tuple[list[Call], list[bool]]:
        """The calls of one pass of ``run``, and for each whether it read the previous call's
        output. ``stop_after``: the pass stops after that many calls; without ``keep_outputs`` only
        the last call keeps its output."""
        self.calls, self.linked, self.recording = [], [], True
        self.stop_after, self.keep_outputs = stop_after, keep_outputs
        try:
            run()
        except _Recorded:
            pass
        finally:
            self.recording = False
        return self.calls, self.linked

    def features(
        self, calls: list[Call], outputs: dict[int, torch.Tensor] | None = None
    ) -> list[torch.Tensor]:
        """The block outputs in `pela.features.BlockCapture`'s order (by block, then call), replayed
        ones in place."""
        outputs = outputs or {}
        order = [i for name in self.names for i, c in enumerate(calls) if c.name == name]
        return [outputs.get(i, calls[i].output) for i in order]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _reads(call: Call, previous: torch.Tensor) -> bool:
    x = hidden_of(call)
    return x is not None and (
        x is previous or (x.shape == previous.shape and torch.equal(x, previous))
    )


def _plain(value: Any) -> bool:
    """A value a call can be given twice: a tensor, a number, a string, or a tuple of them (not a
    cache that grows)."""
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or torch.is_tensor(value) or isinstance(value, (bool, int, float, str))


def run_call(module: nn.Module, call: Call, hidden: torch.Tensor) -> torch.Tensor:
    """``module`` run as ``call`` ran, on other hidden states; its output hidden states."""
    if call.args:
        return arch.block_output(module(hidden, *call.args[1:], **call.kwargs))
    return arch.block_output(module(**{**call.kwargs, "hidden_states": hidden}))


def replay_ready(calls: list[Call], linked: list[bool], start: int) -> bool:
    """Whether calls ``start`` onward can run again on new hidden states: each reads its
    predecessor's output, the first reads hidden states, and nothing they are given may hold state
    (a key-value cache)."""
    if hidden_of(calls[start]) is None or not all(linked[start + 1 :]):
        return False
    return all(_plain(v) for c in calls[start:] for v in (*c.args[1:], *c.kwargs.values()))


def replay(calls: list[Call], linked: list[bool], start: int) -> dict[int, torch.Tensor] | None:
    """The outputs of calls ``start`` onward, run again on the recorded inputs of call ``start``
    (hooks on their layers active); None when a later call does not read its predecessor's output,
    or a call was given something that may hold state (a key-value cache)."""
    if not replay_ready(calls, linked, start):
        return None
    hidden = hidden_of(calls[start])
    outputs = {}
    for i in range(start, len(calls)):
        call = calls[i]
        hidden = outputs[i] = run_call(call.module, call, hidden)
    return outputs


@contextlib.contextmanager
def without_cache(model: nn.Module) -> Iterator[None]:
    """No key-value cache while blocks are replayed: it would hold state between a pass and the
    replay of its blocks."""
    config = getattr(model, "config", None)
    cached = getattr(config, "use_cache", None)
    if cached:
        config.use_cache = False
    try:
        yield
    finally:
        if cached:
            config.use_cache = cached
