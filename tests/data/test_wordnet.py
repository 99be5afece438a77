"""The demo's task: WordNet glosses from Debian's wordnet-base, split and sampled the same each time."""

import json

import pytest

from pela.data.wordnet import gloss_task, wordnet_glosses


def test_wordnet_split_is_fixed():
    glosses = wordnet_glosses()
    assert len({c for _, c, _ in glosses}) == 45
    test = [g for g in glosses if g[2] == "test"]
    assert 0.15 < len(test) / len(glosses) < 0.25
    assert all(isinstance(t, str) and t for t, _, _ in glosses[:100])


@pytest.mark.slow
def test_a_task_is_the_same_sample_each_time_and_its_test_split_is_held_out(tmp_path):
    a, b = gloss_task(tmp_path / "a", 40, 20), gloss_task(tmp_path / "b", 40, 20)
    assert (tmp_path / "a" / "train.jsonl").read_text() == (tmp_path / "b" / "train.jsonl").read_text()
    assert len(a.train) == len(a.unlabeled) == 40 and len(a.test) == 20
    assert a.classes == [f"{c:02d}" for c in range(45)] == b.classes
    texts = {s: {g for g, _, split in wordnet_glosses() if split == s} for s in ("train", "test")}
    test_rows = [json.loads(line) for line in a.test_path.read_text().splitlines()]
    assert all(r["text"] in texts["test"] for r in test_rows)
    assert all(t in texts["train"] for t in (tmp_path / "a" / "unlabeled.txt").read_text().splitlines())
    other = gloss_task(tmp_path / "c", 40, 20, seed=1)
    assert (tmp_path / "c" / "train.jsonl").read_text() != (tmp_path / "a" / "train.jsonl").read_text()
    assert len(other.train) == 40
