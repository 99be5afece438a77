"""WordNet glosses labelled with their lexicographer category: the demo's task.

The data is Debian's ``wordnet-base``. The split is fixed and documented: a synset whose byte offset
is divisible by 5 is ``test``, every other one ``train``; a task samples (seeded) from each.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pela.data.load import load_dataset
from pela.errors import PelaError

WORDNET = Path("/usr/share/wordnet")


def wordnet_glosses(root: Path = WORDNET) -> list[tuple[str, int, str]]:
    """``(gloss, lexicographer category, split)`` for every synset in ``root``.

    Field 2 of a data line is the category (0–44); the gloss follows ``|``.
    """
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            raise PelaError(f"{path} is missing: install Debian's wordnet-base (make install does)")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            fields = line.split(" ", 2)
            gloss = line.split(" | ", 1)[1].strip()
            split = "test" if int(fields[0]) % 5 == 0 else "train"
            out.append((gloss, int(fields[1]), split))
    return out


@dataclass
class GlossTask:
    """A sample of the glosses, written to files and loaded."""

    classes: list[str]  # the categories as two-digit labels, "00" to "44"
    train: Any  # labelled training glosses
    test: Any  # labelled test glosses
    unlabeled: Any  # the training glosses without labels: data for the intermediate pre-training
    test_path: Path


def gloss_task(work: Path, train: int, test: int, seed: int = 0) -> GlossTask:
    """``train`` training and ``test`` test glosses sampled with ``seed``, written into ``work``
    (``train.jsonl``, ``test.jsonl``, ``unlabeled.txt``) and loaded."""
    work.mkdir(parents=True, exist_ok=True)
    glosses = wordnet_glosses()
    classes = [f"{c:02d}" for c in sorted({c for _, c, _ in glosses})]
    rng = random.Random(seed)
    rows = {}
    for split, size in (("train", train), ("test", test)):
        pool = [g for g in glosses if g[2] == split]
        rows[split] = rng.sample(pool, min(size, len(pool)))
    paths = {"train": work / "train.jsonl", "test": work / "test.jsonl"}
    for split, path in paths.items():
        lines = (json.dumps({"text": t, "label": f"{c:02d}"}) + "\n" for t, c, _ in rows[split])
        path.write_text("".join(lines))
    unlabeled = work / "unlabeled.txt"
    unlabeled.write_text("".join(t + "\n" for t, _, _ in rows["train"]))
    # the test split loaded with the training split's label -> index mapping
    return GlossTask(classes, load_dataset(paths["train"], classes=classes),
                     load_dataset(paths["test"], classes=classes),
                     load_dataset(unlabeled), paths["test"])
