"""Split names: a held-out split is found under any name datasets give it."""

from pela.data.splits import HELD_OUT, SPLIT_FOLDERS


def test_every_held_out_name_finds_every_other():
    for name in HELD_OUT:
        assert set(SPLIT_FOLDERS[name]) == set(HELD_OUT)


def test_test_reads_the_held_out_split_or_test_and_train_only_train():
    assert "test" in SPLIT_FOLDERS["test"] and "val" in SPLIT_FOLDERS["test"]
    assert set(SPLIT_FOLDERS["train"]) == {"train", "training"}
    assert not set(SPLIT_FOLDERS["train"]) & set(HELD_OUT)
