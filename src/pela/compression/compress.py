"""Stage 1 of PELA: replace eligible linear layers with truncated-SVD factors, in place.

`compress` walks the model (`pela.targets`), computes each layer's spectrum with an
*initialization* from the `INITS` registry (plain SVD of the weights, or SVD of the weights whitened
by calibration statistics), picks ranks (one rule per layer, `choose_rank`, or one budget for the
whole model, `pela.allocate`), and swaps all layers at once at the end, so a failure halfway leaves
the model untouched. A new initialization is one decorated function.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from pela.compression import config as _config
from pela.utils.progress import progress_bar
from pela.compression.allocate import allocate, max_rank, sensitivities
from pela.compression.calibrate import Calibration
from pela.compression.config import LowRankConfig
from pela.errors import PelaError
from pela.layers.lowrank import LowRankLinear
from pela.compression.report import CompressionReport, LayerReport
from pela.compression.targets import Candidate, select


@dataclass
class Spectrum:
    """A layer's singular values and a way to cut factors from them at any rank."""

    sigma: torch.Tensor  # descending singular values
    factors: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # rank -> (A: r × in, B: out × r)


INITS: dict[str, Callable[..., Spectrum]] = {}
NEEDS_CALIBRATION: set[str] = set()


def register_init(name: str, needs_calibration: bool = False) -> Callable:
    """Register ``fn(weight, stats) -> Spectrum`` as ``LowRankConfig(init=name)``.

    ``stats`` is the layer's input second moment ``E[x xᵀ]`` from `pela.calibrate` (float64,
    in × in), or ``None`` for inits that do not need calibration.
    """

    def deco(fn: Callable[..., Spectrum]) -> Callable[..., Spectrum]:
        INITS[name] = fn
        if needs_calibration:
            NEEDS_CALIBRATION.add(name)
        if name not in _config.INITS:
            _config.INITS = (*_config.INITS, name)
        return fn

    return deco


@register_init("svd")
def svd_spectrum(weight: torch.Tensor, stats: Any = None) -> Spectrum:
    """Truncated SVD of ``weight`` (out × in), factors split evenly: ``B = U√Σ``, ``A = √Σ Vᵀ``.

    Computed from the eigendecomposition of the smaller Gram matrix (``W Wᵀ`` or ``Wᵀ W``), which is
    several times faster than an SVD and, since the top-r projection is what matters, loses nothing
    measurable against the Eckart–Young optimum (tests check this against a float64 SVD).
    """
    w = weight
    n_out, n_in = w.shape
    wide = n_out <= n_in  # eigenvectors are then the left singular vectors U
    gram = w @ w.T if wide else w.T @ w
    try:
        evals, vecs = torch.linalg.eigh(gram)
    except RuntimeError:  # ill-conditioned in float32: retry in float64
        evals, vecs = (t.to(w.dtype) for t in torch.linalg.eigh(gram.double()))
    sigma = evals.flip(0).clamp_min(0).sqrt()
    vecs = vecs.flip(1)
    floor = sigma[0] * torch.finfo(w.dtype).eps * max(n_out, n_in)

    def factors(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        root = sigma[:rank].sqrt()
        inv = torch.where(sigma[:rank] > floor, 1 / root.clamp_min(1e-30), torch.zeros_like(root))
        v = vecs[:, :rank]
        if wide:  # B = U√Σ, A = √Σ⁻¹ Uᵀ W  (= √Σ Vᵀ)
            return (v * inv).T @ w, v * root
        return (v * root).T, w @ (v * inv)  # A = √Σ Vᵀ, B = W V √Σ⁻¹ (= U√Σ)

    return Spectrum(sigma, factors)


WHITEN_DAMPING = 1e-2  # ridge added to E[x xᵀ], relative to its mean eigenvalue


@register_init("whiten", needs_calibration=True)
def whiten_spectrum(weight: torch.Tensor, stats: torch.Tensor) -> Spectrum:
    """The rank-r ``BA`` that minimizes ``E‖(W − BA)x‖²`` over the calibration inputs (SVD-LLM's whitening).

    With ``C = E[x xᵀ] = S Sᵀ`` the output error is ``‖(W − BA) S‖_F²``, so the best ``BA`` is the
    truncated SVD of ``W S`` mapped back through ``S⁻¹``. ``S = QΛ½`` comes from an eigendecomposition
    in float64, with ``WHITEN_DAMPING`` × the mean eigenvalue added so that rank-deficient statistics
    (too few or degenerate calibration inputs) stay invertible. The singular values are those of
    ``W S``: they measure output error on calibration data, which is what rank allocation should see.
    """
    c = stats.to(weight.device, torch.float64)
    evals, q = torch.linalg.eigh((c + c.T) / 2)
    evals = evals.clamp_min(0)
    scale = float(evals.mean())
    if not scale > 1e-30 or not math.isfinite(scale):  # all-zero inputs: every BA is equally good, so plain SVD
        evals, scale = torch.ones_like(evals), 1.0
    evals = evals + WHITEN_DAMPING * scale
    root = evals.sqrt()
    inner = svd_spectrum(weight.double() @ (q * root))  # W S
    s_inv = (q / root).T

    def factors(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = inner.factors(rank)
        return (a @ s_inv).to(weight.dtype), b.to(weight.dtype)

    return Spectrum(inner.sigma, factors)


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of the best rank-``rank`` approximation of ``weight``, in its dtype."""
    w = weight.to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    a, b = svd_spectrum(w).factors(rank)
    return a.to(weight.dtype), b.to(weight.dtype)


def _align(r: int, align: int, up: bool) -> int:
    if align <= 1 or r < align:
        return align if up and r > 0 and align > 1 else r
    return -(-r // align) * align if up else r // align * align


def choose_rank(out_features: int, in_features: int, sigma: torch.Tensor, config: LowRankConfig) -> tuple[int, str | None]:
    """The rank for one layer and, if it must stay dense, why.

    ratio k: ``floor(m·n / (k·(m+n)))`` rounded *down* to ``align``; rank: capped at full rank and
    rounded down; energy: the fewest singular values whose ``Σσ²`` reaches the fraction, rounded *up*.
    A rank that would not make the layer smaller (``r·(m+n) ≥ m·n``) leaves it dense.
    """
    m, n = in_features, out_features
    full = min(m, n)
    mode, value = config.resolved_mode()
    if mode == "ratio":
        r = _align(math.floor(m * n / (value * (m + n))), config.align, up=False)
    elif mode == "rank":
        r = _align(min(int(value), full), config.align, up=False)
    else:
        energy = sigma.double() ** 2
        total = float(energy.sum())
        if total == 0:
            r = 1
        else:
            cum = torch.cumsum(energy, 0) / total
            r = int(torch.searchsorted(cum, torch.tensor(value - 1e-12, dtype=cum.dtype))) + 1
        r = min(_align(min(r, full), config.align, up=True), full)
    if r < 1:
        return 0, f"{mode}={value} gives rank 0"
    if r * (m + n) >= m * n:
        return r, f"rank {r} would not make it smaller (break-even {m * n / (m + n):.0f})"
    return r, None


def _relative_error(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, sigma: torch.Tensor, rank: int) -> float:
    """``||W − BA||_F / ||W||_F``: from the discarded singular values when that is exact enough
    (working-precision factors, error above 1%), else by forming ``BA`` (one extra matmul)."""
    energy = sigma.double() ** 2
    total = float(energy.sum())
    if total == 0:
        return 0.0
    tail = float(energy[rank:].sum()) / total
    if a.dtype == w.dtype and tail > 1e-4:
        return tail**0.5
    return float(torch.linalg.matrix_norm(w - b.to(w.dtype) @ a.to(w.dtype)) / torch.linalg.matrix_norm(w))


def _allocate_budget(model: nn.Module, layers: list, config: LowRankConfig, calibration: Calibration, progress: bool) -> dict[str, int]:
    """Ranks for ``param_budget``: probe each layer's sensitivity at the uniform rank of the same size, then allocate."""
    fraction, align = config.param_budget, config.align
    device = next(model.parameters()).device

    def uniform_rank(n_out: int, n_in: int) -> int:  # what one ratio for all layers would give, kept in [one step, break-even)
        cap = max_rank(n_out, n_in, align)
        return max(min(align, cap), min(_align(math.floor(fraction * n_out * n_in / (n_out + n_in)), align, up=False), cap))

    def delta(work: torch.Tensor, spectrum: Spectrum, rank: int) -> Callable[[], torch.Tensor]:
        def make() -> torch.Tensor:
            a, b = spectrum.factors(rank)
            return (b.to(work.dtype) @ a.to(work.dtype) - work).to(device)
        return make

    shapes = [tuple(c.weight.shape) for c, *_ in layers]
    reference = [uniform_rank(*shape) for shape in shapes]
    probes = [(c.name, c.module, delta(work, sp, r), float((sp.sigma.double() ** 2)[r:].sum()))
              for (c, _, work, sp, _), r in zip(layers, reference)]
    with progress_bar(progress, len(probes), "probing sensitivity") as advance:
        weights = sensitivities(model, probes, calibration.probe, advance)
    ranks = {c.name: r for (c, *_), r in zip(layers, reference)}  # layers the probes cannot see keep these
    free = [i for i, w in enumerate(weights) if w is not None]
    budget = int(fraction * sum(o * i for o, i in shapes)) - sum(reference[i] * sum(shapes[i]) for i, w in enumerate(weights) if w is None)
    chosen = allocate([shapes[i] for i in free], [layers[i][3].sigma for i in free], budget, align, [weights[i] for i in free])
    ranks.update({layers[i][0].name: r for i, r in zip(free, chosen)})
    return ranks


def _tail_error(sigma: torch.Tensor, rank: int) -> float:
    """Relative error in the init's own metric (for whiten: outputs on calibration inputs), from the discarded σ."""
    energy = sigma.double() ** 2
    total = float(energy.sum())
    return (float(energy[rank:].sum()) / total) ** 0.5 if total > 0 else 0.0


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compress(model: nn.Module, config: LowRankConfig | None = None, *, calibration: Calibration | None = None,
             progress: bool = False) -> CompressionReport:
    """Factorize the eligible linear layers of ``model`` in place and report what was done.

    Args:
        model: any `nn.Module`; its linear layers (`pela.arch.LINEAR_LIKE`) are candidates.
        config: what to compress and how; defaults to ``LowRankConfig()`` (k=2, ranks aligned to 8).
        calibration: input statistics from `pela.calibrate`, needed by ``init="whiten"``.
        progress: show a progress bar over layers on stderr.

    Returns:
        A `CompressionReport` with one row per linear layer (factorized or dense, with the reason).

    Raises:
        PelaError: the model is already compressed, has no linear layers, a pattern matches nothing,
            the init needs calibration that was not given, or no layer could be factorized.

    >>> import torch.nn as nn, pela
    >>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    >>> pela.compress(net, pela.LowRankConfig(ratio=2)).params_after < 2 * 64 * 65
    True
    """
    if not isinstance(model, nn.Module):
        raise PelaError(f"compress expects a torch.nn.Module, got {type(model).__name__}")
    config = config or LowRankConfig()
    if not isinstance(config, LowRankConfig):
        raise PelaError(f"config must be a LowRankConfig, got {type(config).__name__}")
    mode, _ = config.resolved_mode()
    if mode == "param_budget" and calibration is None:
        raise PelaError("param_budget spends the budget where measured layer sensitivity says it matters, which needs calibration "
                        "data: pass calibration=pela.calibrate(model, data) (CLI: --calib DATA)")
    if config.init in NEEDS_CALIBRATION and calibration is None:
        raise PelaError(f"init={config.init!r} needs calibration data: pass calibration=pela.calibrate(model, data) "
                        "(CLI: --calib DATA)")
    start = time.perf_counter()
    params_before = count_params(model)
    candidates = select(model, config)
    moments = calibration.moments if calibration is not None else {}
    if calibration is not None and not any(c.name in moments for c in candidates if c.skip_reason is None):
        raise PelaError("the calibration statistics belong to none of this model's layers (calibrated another model?)")
    rows: list[LayerReport] = []
    todo = sum(c.skip_reason is None for c in candidates)

    def spectra() -> Iterator[tuple[Candidate, LayerReport, torch.Tensor, Spectrum, bool]]:
        with progress_bar(progress, todo, "factorizing") as advance:
            for c in candidates:
                out_f, in_f = c.weight.shape
                dense = out_f * in_f + (0 if c.bias is None else out_f)
                row = LayerReport(c.name, in_f, out_f, None, dense, dense, None, "dense", c.skip_reason)
                rows.append(row)
                if c.skip_reason is not None:
                    continue
                w = c.weight.detach()
                if w.device.type == "meta":
                    raise PelaError(f"layer {c.name} has no data (meta device); load real weights before compressing")
                work = w.to(config.device or w.device, torch.float64 if w.dtype == torch.float64 else torch.float32)
                init, stats = config.init, moments.get(c.name)
                if init in NEEDS_CALIBRATION and stats is None:
                    init = "svd"  # no calibration input reached this layer
                row.init = init
                advance(info=c.name)
                yield c, row, work, INITS[init](work, stats), init in NEEDS_CALIBRATION

    layers: Iterable = spectra()
    ranks: dict[str, int] = {}
    if mode == "param_budget":  # ranks depend on every layer's spectrum: compute them all first
        layers = list(layers)
        ranks = _allocate_budget(model, layers, config, calibration, progress)
    swaps: list[tuple[nn.Module, str, LowRankLinear]] = []
    sigmas: dict[str, list[float]] = {}
    for c, row, work, spectrum, weighted in layers:
        out_f, in_f = c.weight.shape
        sigmas[c.name] = spectrum.sigma.float().tolist()
        if c.name in ranks:
            rank, reason = ranks[c.name], None
        else:
            rank, reason = choose_rank(out_f, in_f, spectrum.sigma, config)
        if reason is not None:
            row.reason = reason
            continue
        a, b = spectrum.factors(rank)
        a, b = a.to(c.weight.dtype), b.to(c.weight.dtype)
        err = _tail_error(spectrum.sigma, rank) if weighted else _relative_error(work, a, b, spectrum.sigma, rank)
        new = LowRankLinear.from_factors(a.to(c.weight.device), b.to(c.weight.device), None if c.bias is None else c.bias.detach())
        new.train(c.module.training)
        swaps.append((c.parent, c.name.rsplit(".", 1)[-1], new))
        row.rank, row.status, row.rel_error = rank, "factorized", float(err)
        row.params_after = rank * (in_f + out_f) + (0 if c.bias is None else out_f)
    if not swaps:
        reasons = sorted({r.reason for r in rows if r.reason})
        raise PelaError(f"no layer was factorized ({len(rows)} linear layers; reasons: {'; '.join(reasons)[:300]})")
    for parent, attr, new in swaps:
        setattr(parent, attr, new)
    return CompressionReport(rows, params_before, count_params(model), time.perf_counter() - start, config.to_dict(), sigmas)
