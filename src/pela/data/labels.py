"""A dataset's classes, and relabelling one dataset by another's class names."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


def dataset_classes(ds: Dataset) -> list[str] | None:
    return getattr(ds, "classes", None)


def unlabelled_reason(ds: Dataset) -> str:
    """Why ``ds`` has no labels, for an error where they are needed."""
    return getattr(ds, "unlabelled", None) or ("class sub-folders, idx labels, or a label field; "
                                               f"{type(ds).__name__} data has none")


class _Relabelled(Dataset):
    """A labelled dataset with its labels renumbered to another order of classes (a model's own)."""

    def __init__(self, data: Dataset, index: list[int], classes: list[str]):
        self.data, self.index, self.classes = data, index, classes

    def __len__(self) -> int:
        return len(self.data)

    @property
    def lengths(self) -> list[int] | None:
        return getattr(self.data, "lengths", None)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.data[i]
        for key in ("label", "labels"):  # pela's datasets say label; a collated one may say labels
            if key in item:
                value = item[key]
                new = self.index[int(value)]
                return {**item, key: torch.tensor(new) if torch.is_tensor(value) else new}
        return item


def align_classes(
    data: Dataset, names: list[str] | None, *, subset: bool = False, extend: bool = False
) -> Dataset:
    """``data`` labelled in the order of ``names`` (the classes a model names,
    `pela.arch.class_names`) when it has exactly those classes, or with ``subset`` some of them;
    otherwise ``data`` as it is.

    With ``extend`` too, classes ``names`` lacks (a rare class a small training set missed) are kept
    after them, numbered ``len(names)``, ``len(names) + 1``, ...: outputs no model has, so that an
    evaluation scores their examples as errors instead of refusing the data.

    A dataset numbers its classes in sorted order; a model fine-tuned elsewhere may order the same
    names differently (``id2label = {0: "positive", 1: "negative"}``), and comparing indices would
    then score a perfect classifier at 0%.
    """
    classes = dataset_classes(data)
    if not classes or not names or list(classes) == list(names) or len(set(names)) != len(names):
        return data
    unknown = [c for c in classes if c not in set(names)]
    if not (set(classes) == set(names) or (subset and not unknown)):
        # sharing no class: the data's labels are indices
        if not (subset and extend and len(unknown) < len(classes)):
            return data
    order = list(names) + unknown
    position = {c: i for i, c in enumerate(order)}
    return _Relabelled(data, [position[c] for c in classes], order)
