"""The data people already hold, as pela's datasets: a Hugging Face ``datasets.Dataset``, a list of
texts, a list of ``(text, label)`` pairs, or any map-style dataset of pela's own examples.

`as_dataset` is what `pela.finetune`, `pela.distill`, `pela.calibrate`, `pela.compare` and
`pela.evaluate` call first: records are read the way `pela.load_dataset` reads files (the text in
``text`` or the one column of text, the class in ``label`` or a usual name, a ClassLabel's names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from pela.data.records import default_label_field, read_records
from pela.data.tables import TableRows
from pela.errors import PelaError


def as_dataset(data: Any, *, text_field: str | None = None, label_field: str | None = None) -> Any:
    """``data`` as a dataset pela reads; a dataset of pela's own (or any other map-style dataset) is
    returned as it is."""
    kind = type(data).__module__.split(".")[0] + "." + type(data).__name__
    if kind == "datasets.DatasetDict":
        raise PelaError(
            f"pass one split of the DatasetDict (its splits: {', '.join(data)}), e.g. data['train']"
        )
    if kind == "datasets.IterableDataset":
        raise PelaError(
            "a streaming datasets.IterableDataset has no length to sample from; take examples "
            "first: datasets.Dataset.from_list(list(data.take(N)))"
        )
    if kind == "datasets.Dataset":
        return _from_hf(data, text_field, label_field)
    if isinstance(data, (list, tuple)) and data and not isinstance(data[0], dict):
        return _from_list(list(data), text_field, label_field)
    return data


def _from_hf(data: Any, text_field: str | None, label_field: str | None) -> Dataset:
    """A ``datasets.Dataset`` through its Arrow table (memory-mapped, as the dataset holds it), with
    its ClassLabel names."""
    # a shuffled or selected view: its rows, in its order
    if getattr(data, "_indices", None) is not None:
        data = data.flatten_indices()
    names = {
        k: [str(n) for n in v.names]
        for k, v in data.features.items()
        if type(v).__name__ == "ClassLabel"
    }
    rows = TableRows(data.data.table)
    if not len(rows):
        raise PelaError("the datasets.Dataset is empty")
    label_field = label_field or default_label_field(rows[0], list(names))
    return read_records(
        Path("<datasets.Dataset>"),
        text_field,
        label_field,
        rows=rows,
        label_names=names.get(label_field),
    )


def _from_list(items: list[Any], text_field: str | None, label_field: str | None) -> Dataset:
    """A list of texts, or of ``(text, label)`` pairs (labels sorted into classes as in files)."""
    if all(isinstance(x, str) for x in items):
        rows = [{"text": x} for x in items]
    elif all(isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[0], str) for x in items):
        rows = [{"text": text, "label": label} for text, label in items]
    else:
        first = items[0]
        raise PelaError(
            f"a list of examples holds texts or (text, label) pairs; item 1 is "
            f"{type(first).__name__} {first!r:.60}"
        )
    return read_records(
        Path("<list of examples>"), text_field or "text", label_field or "label", rows=rows
    )
