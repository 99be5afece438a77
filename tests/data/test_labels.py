"""Relabelling: a dataset's labels follow the order of a model's class names."""

from pela.data.labels import align_classes, dataset_classes, unlabelled_reason


class Rows:
    def __init__(self, labels, classes):
        self.items, self.classes = [{"text": f"t{i}", "label": y} for i, y in enumerate(labels)], classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_the_same_classes_in_another_order_are_renumbered():
    data = Rows([0, 1, 1], ["negative", "positive"])  # datasets number classes in sorted order
    aligned = align_classes(data, ["positive", "negative"])
    assert dataset_classes(aligned) == ["positive", "negative"]
    assert [aligned[i]["label"] for i in range(3)] == [1, 0, 0]


def test_some_classes_need_subset_and_unknown_ones_extend():
    data = Rows([0, 1, 2], ["a", "b", "c"])
    assert align_classes(data, ["b", "a", "c", "d"]) is data  # not exactly the model's classes
    subset = align_classes(data, ["c", "b", "a", "d"], subset=True)
    assert [subset[i]["label"] for i in range(3)] == [2, 1, 0]
    extended = align_classes(Rows([0, 1, 2], ["a", "b", "z"]), ["b", "a"], subset=True, extend=True)
    assert dataset_classes(extended) == ["b", "a", "z"]
    assert [extended[i]["label"] for i in range(3)] == [1, 0, 2]  # z: an output no model has


def test_nothing_shared_or_nothing_named_leaves_the_data_alone():
    data = Rows([0, 1], ["x", "y"])
    assert align_classes(data, ["p", "q"]) is data and align_classes(data, None) is data
    assert align_classes(data, ["x", "y"]) is data
    assert "label field" in unlabelled_reason(object())
