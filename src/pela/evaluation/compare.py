"""How far a student is from its teacher: per-block feature MSE and cosine similarity, and output
agreement."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from pela import arch
from pela.data.collate import Collator
from pela.data.inputs import as_dataset
from pela.errors import PelaError
from pela.features import BlockCapture, real_tokens, token_mse
from pela.utils.progress import progress_bar


def eval_subset(data: Dataset, samples: int, seed: int = 0) -> Subset:
    """The seeded random ``samples`` examples of ``data`` (all of them if fewer) that an evaluation
    scores, in data order."""
    n = min(samples, len(data))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return Subset(data, order[:n].sort().values.tolist())


@torch.no_grad()
def compare(student: nn.Module, teacher: nn.Module, data: Dataset, *,
            collate_fn: Callable | None = None, samples: int = 256, batch_size: int = 32,
            blocks: str | None = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Feature MSE and cosine similarity for each block on a seeded sample of ``data``, plus output
    agreement.

    Padding tokens (outside the batch's ``attention_mask``) do not count. ``progress`` shows a bar
    over the batches on stderr.

    Output agreement is the fraction of equal argmax predictions when the models output class
    logits (2-D), else the mean cosine similarity of their output vectors.
    """
    data = as_dataset(data)  # a datasets.Dataset, a list of texts or of (text, label) pairs
    if samples < 1 or batch_size < 1:
        raise PelaError(f"samples and batch size must be >= 1, got {samples} and {batch_size}")
    if len(data) == 0:
        raise PelaError("no examples to compare on: the data is empty")
    names = _shared_blocks(student, teacher, blocks)
    loader = DataLoader(eval_subset(data, samples, seed), batch_size=batch_size,
                        collate_fn=collate_fn or Collator(student))
    caps = BlockCapture(student, names), BlockCapture(teacher, names)
    tally = _Tally()
    student.eval(), teacher.eval()
    try:
        with progress_bar(progress, len(loader), "comparing") as advance:
            # the models' (during distillation, maybe a GPU)
            device = next(student.parameters()).device
            for batch in loader:
                batch.pop("labels", None)
                batch = {k: v.to(device) for k, v in batch.items()}
                outputs = [arch.main_output(arch.forward(m, batch)) for m in (student, teacher)]
                s_feats, t_feats = caps[0].take(), caps[1].take()  # the labels too
                masks = arch.block_masks(student, caps[0].labels, batch)
                rows = next(iter(batch.values())).shape[0]
                tally.add(s_feats, t_feats, masks, *outputs, rows)
                advance()
    finally:
        for c in caps:
            c.remove()
    return tally.result(caps[1].labels)


def _shared_blocks(student: nn.Module, teacher: nn.Module, blocks: str | None) -> list[str]:
    """The teacher's blocks (``blocks``: a regex naming them), each of which the student has."""
    names = arch.find_blocks(teacher, blocks)
    if not names:
        raise PelaError(f"found no Transformer blocks in the teacher ({type(teacher).__name__}) "
                        "to compare; name them with blocks=REGEX")
    modules = dict(student.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise PelaError(f"the student has no block {missing[0]!r} of the teacher: compare a "
                        "student with the teacher it was compressed from")
    return names


class _Tally:
    """Sums over the examples: per captured feature (a block, or each call of a block shared
    across depth), the MSE and cosine similarity; the outputs' agreement."""

    def __init__(self) -> None:
        self.mse: list[torch.Tensor] = []
        self.cos: list[torch.Tensor] = []
        self.agree, self.count, self.kind = 0.0, 0, "cosine"

    def add(self, s_feats: list, t_feats: list, masks: list, s_out: torch.Tensor,
            t_out: torch.Tensor, rows: int) -> None:
        if not self.mse:
            self.mse = [torch.zeros((), dtype=torch.float64) for _ in t_feats]
            self.cos = [torch.zeros((), dtype=torch.float64) for _ in t_feats]
        for i, (s, t, mask) in enumerate(zip(s_feats, t_feats, masks)):
            self.mse[i] += token_mse(s, t, mask).double().cpu() * rows
            cosine = F.cosine_similarity(real_tokens(s, mask).float(), real_tokens(t, mask).float(),
                                         dim=-1)
            self.cos[i] += cosine.mean().double().cpu() * rows
        if s_out.dim() == 2:  # class logits: the same prediction or not
            self.kind = "argmax"
            self.agree += float((s_out.argmax(-1) == t_out.argmax(-1)).float().sum())
        else:
            cosine = F.cosine_similarity(s_out.float(), t_out.float(), dim=-1)
            self.agree += float(cosine.mean()) * rows
        self.count += rows

    def result(self, labels: list[str]) -> dict[str, Any]:
        n = self.count
        per_block = [{"block": b, "mse": float(self.mse[i] / n), "cosine": float(self.cos[i] / n)}
                     for i, b in enumerate(labels)]
        return {
            "samples": n,
            "mean_mse": sum(b["mse"] for b in per_block) / len(per_block),
            "mean_cosine": sum(b["cosine"] for b in per_block) / len(per_block),
            "output_agreement": self.agree / n,
            "output_agreement_kind": self.kind,
            "blocks": per_block,
        }
