"""Sequential, error-correcting factorization: each layer fit on the inputs the compressed student
gives it.

One-shot data-aware factorization fits every layer on the *teacher's* inputs, so each layer's error
is small on its own, but the errors of earlier layers reach later ones unseen. Here the blocks are
factorized in depth order, and inside a block one stage at a time (the layers that read the same
input, like q, k and v, are one stage): each stage's statistics come from the partly compressed
student, and its factors are fit to reproduce the *teacher's* outputs from them,
``min E‖W x_t − BA x_s‖²`` (`pela.linalg.corrected_weight`, then the whitened SVD on the student's
inputs), so later layers correct the errors of earlier ones before any training.

Memory: on the calibration examples, the hidden states entering the current block (teacher and
student), the teacher's inputs to that block's stages (one dense pass of the block gives them all),
and one stage's statistics; the teacher of the current block is a copy of that block alone. Work:
the dense block runs once per block, the student's about once per stage, each run stopped at the
stage it feeds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from pela import arch
from pela.compression.replay import (
    BlockCalls,
    Call,
    hidden_of,
    replay_ready,
    run_call,
    without_cache,
)
from pela.errors import warn
from pela.features import real_tokens
from pela.linalg import Spectrum, corrected_weight, whiten_spectrum
from pela.utils.device import model_device
from pela.utils.progress import progress_bar


@dataclass
class Fit:
    """One layer to refit: where it lives, its rank, and what to do with the factors."""

    name: str
    rank: int
    # puts the factors cut from this spectrum at this rank in the model
    swap: Callable[[Spectrum, int], None]


class _Stop(Exception):
    """Raised by a hook once the inputs of the stage being fit are seen: the rest of the block need
    not run."""


def _chains(
    model: nn.Module, batches: list[dict[str, Any]], blocks: list[str]
) -> list[list[Call]] | None:
    """Each batch's block calls from a full pass of the (still uncompressed) model, or None when the
    blocks do not form one chain that can be re-run block by block (encoder-decoders, shared blocks,
    a cache)."""
    recorder = BlockCalls(model, blocks)
    chains = []
    try:
        for batch in batches:
            # after the first pass, the others stop at its last block call; only the first call's
            # input is kept
            calls, linked = recorder.record(
                lambda: arch.forward(model, batch),
                len(chains[0]) if chains else None,
                keep_outputs=False,
            )
            names = [c.name for c in calls]
            if not calls or not replay_ready(calls, linked, 0) or len(set(names)) != len(names):
                return None
            if chains and names != [c.name for c in chains[0]]:
                return None
            # only the first block's input is kept
            chains.append([_without_hidden(c) if i else c for i, c in enumerate(calls)])
    finally:
        recorder.remove()
    return chains


def _without_hidden(call: Call) -> Call:
    """``call`` without the hidden states it read or returned (they are recomputed, block by
    block)."""
    if call.args:
        return Call(call.name, call.module, (None, *call.args[1:]), call.kwargs, None)
    return Call(
        call.name,
        call.module,
        (),
        {k: v for k, v in call.kwargs.items() if k != "hidden_states"},
        None,
    )


@dataclass
class _TeacherPass:
    """What the dense copy of a block gives on every calibration batch: the order its layers run in,
    grouped into stages (layers reading one input), each stage's input (real tokens) per batch, and
    the block's outputs."""

    stages: list[list[str]]
    inputs: dict[str, list[torch.Tensor]]  # first layer of each stage -> its input on each batch
    outputs: list[torch.Tensor]


def _teacher_pass(
    teacher: nn.Module,
    calls: list[Call],
    hidden: list[torch.Tensor],
    dense: dict[str, nn.Module],
    masks: list[torch.Tensor | None],
) -> _TeacherPass:
    seen: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def hook(name: str) -> Callable:
        def pre(module: nn.Module, args: Any) -> None:
            if args and torch.is_tensor(args[0]) and name not in seen:
                seen[name] = args[0]

        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in dense.items()]
    result = _TeacherPass([], {}, [])
    try:
        for call, h, mask in zip(calls, hidden, masks):
            seen.clear()
            result.outputs.append(run_call(teacher, call, h))
            if not result.stages:
                order = list(seen)
                # consecutive layers reading the very same tensor share a stage
                for i, name in enumerate(order):
                    if i and seen[name] is seen[order[i - 1]]:
                        result.stages[-1].append(name)
                    else:
                        result.stages.append([name])
            for stage in result.stages:
                x = seen.get(stage[0])
                if x is None:
                    raise RuntimeError(
                        f"sequential factorization: {stage[0]} ran on one calibration batch and "
                        "not on another"
                    )
                result.inputs.setdefault(stage[0], []).append(real_tokens(x, mask).float())
    finally:
        for h in handles:
            h.remove()
    return result


def _inputs(block: nn.Module, call: Call, hidden: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """What ``layer`` (inside ``block``) reads when the block runs on ``hidden``; the block stops
    there."""
    seen: list[torch.Tensor] = []

    def pre(module: nn.Module, args: Any) -> None:
        seen.append(args[0])
        raise _Stop

    handle = layer.register_forward_pre_hook(pre)
    try:
        run_call(block, call, hidden)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not seen:
        raise RuntimeError(
            "sequential factorization: a layer seen in one pass of its block was not reached in "
            "another"
        )
    return seen[0]


def _stage_statistics(
    student: nn.Module,
    first: str,
    calls: list[Call],
    hidden_s: list[torch.Tensor],
    teacher_inputs: list[torch.Tensor],
    masks: list[torch.Tensor | None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[x_s x_sᵀ]`` and ``E[x_t x_sᵀ]`` of one stage's input over the calibration batches (real
    tokens only)."""
    layer = dict(student.named_modules())[first]
    c_ss = c_ts = None
    count = 0
    for call, h_s, x_t, mask in zip(calls, hidden_s, teacher_inputs, masks):
        x_s = real_tokens(_inputs(student, call, h_s, layer), mask).float()
        ss, ts = (x_s.T @ x_s).double(), (x_t.T @ x_s).double()
        c_ss, c_ts = (ss, ts) if c_ss is None else (c_ss + ss, c_ts + ts)
        count += x_s.shape[0]
    return c_ss / count, c_ts / count


def _teacher_statistics(inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[x_t x_tᵀ]`` twice (the same object): the student is fed the teacher's inputs."""
    c = sum((x.T @ x).double() for x in inputs) / sum(len(x) for x in inputs)
    return c, c


@torch.no_grad()
def refit(
    model: nn.Module,
    fits: list[Fit],
    batches: list[dict[str, Any]],
    progress: bool = False,
    feed: str = "student",
) -> set[str]:
    """Factorize ``fits`` block by block, in depth order, each stage fit on the partly compressed
    model's inputs.

    ``feed="teacher"`` fits every layer on the original model's inputs instead, which is one-shot
    whitening computed block by block (the check that this machinery's statistics are
    calibration's).

    Layers outside every block, or in a block the calibration batches never ran, are left to the
    caller (their names are not in the returned set). Returns the names of the layers refit and
    swapped in. Where the blocks do not form one chain (see `_chains`), nothing is done and a
    warning says so.
    """
    blocks = arch.find_blocks(model)
    by_block = {b: [f for f in fits if f.name.startswith(b + ".")] for b in blocks}
    if not blocks or not any(by_block.values()):
        return set()
    device = model_device(model)
    batches = [
        {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches
    ]
    was_training = model.training
    model.eval()
    try:
        with without_cache(model):
            chains = _chains(model, batches, blocks)
            if chains is None:
                warn(
                    "sequential factorization needs blocks that run one after another, each once, "
                    "on the previous one's output; this model's do not, so its layers are "
                    "factorized one-shot"
                )
                return set()
            return _refit_chain(model, fits, chains, batches, progress, feed == "teacher")
    finally:
        model.train(was_training)


def _refit_chain(
    model: nn.Module,
    fits: list[Fit],
    chains: list[list[Call]],
    batches: list[dict[str, Any]],
    progress: bool,
    teacher_fed: bool = False,
) -> set[str]:
    by_name = {f.name: f for f in fits}
    masks = [b.get("attention_mask") for b in batches]
    hidden_t = [hidden_of(chain[0]) for chain in chains]
    hidden_s = list(hidden_t)
    done: set[str] = set()
    with progress_bar(progress, len(fits), "factorizing sequentially") as advance:
        for position, first_call in enumerate(chains[0]):
            block, prefix = first_call.module, first_call.name + "."
            calls = [chain[position] for chain in chains]
            teacher = copy.deepcopy(block)  # the dense block: its layers' outputs are the targets
            local = {
                name[len(prefix) :]: f for name, f in by_name.items() if name.startswith(prefix)
            }
            dense = {n: m for n, m in teacher.named_modules() if n in local}
            taught = _teacher_pass(teacher, calls, hidden_t, dense, masks)
            for stage in taught.stages:
                x_t = taught.inputs.pop(stage[0])
                c_ss, c_ts = (
                    _teacher_statistics(x_t)
                    if teacher_fed
                    else _stage_statistics(block, stage[0], calls, hidden_s, x_t, masks)
                )
                for name in stage:
                    fit = local[name]
                    weight = arch.linear_weight(dense[name])[0].detach().float()
                    fit.swap(whiten_spectrum(corrected_weight(weight, c_ss, c_ts), c_ss), fit.rank)
                    done.add(fit.name)
                    advance(info=fit.name)
                del c_ss, c_ts
            hidden_t = taught.outputs
            hidden_s = [run_call(block, call, h) for call, h in zip(calls, hidden_s)]
            del teacher
    return done
