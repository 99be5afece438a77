"""What datasets call their splits, and finding the held-out one."""

from __future__ import annotations

# what datasets call the split to evaluate on
HELD_OUT = ("validation", "val", "valid", "dev", "eval")
# folder names that mean a split, not a class: ImageNet-style data is root/train/<class>/...,
# root/val/<class>/...; each split read finds the folders of the names it accepts
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "test": HELD_OUT[:4] + ("test", "eval"),
    **{name: HELD_OUT for name in HELD_OUT},
}
