"""pela.evaluation.classifier: accuracy, balanced accuracy, macro F1, each class's scores, labels read by class name."""

import warnings

import pytest
import torch
from conftest import FourImages, Labelled, stack

import pela
from pela.metadata import info


class ByFirstToken(torch.nn.Module):
    """A perfect classifier of `Labelled` that numbers its classes its own way (its `pela.metadata.info` classes)."""

    def __init__(self, names):
        super().__init__()
        info(self).classes = names
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        data_class = [Labelled.classes[int(t) - 1] for t in input_ids[:, 0]]
        names = info(self).classes  # a class it lacks gets some output of its own (a wrong one)
        own = torch.tensor([names.index(c) if c in names else Labelled.classes.index(c) % len(names) for c in data_class])
        return torch.nn.functional.one_hot(own, len(info(self).classes)).float() * 10 + self.w


def test_labels_follow_the_models_own_order_of_classes():
    """A model that orders the data's class names differently is scored by name, not by index."""
    for names in (["c", "a", "b"], ["c", "x", "a", "b"]):  # the same classes; or more, the data having some of them
        assert pela.evaluate(ByFirstToken(names), Labelled(), collate_fn=stack)["accuracy"] == 1.0
    # class names the model does not share: indices are all there is to go by, and they are kept
    assert pela.evaluate(ByFirstToken(["0", "1", "2"]), Labelled(), collate_fn=stack)["accuracy"] == 1.0


def test_balanced_accuracy_macro_f1_and_each_class():
    """Scores that a majority class cannot flatter, and each class's own, for the classes the data has."""

    class AlwaysFirst(ByFirstToken):
        def forward(self, input_ids, attention_mask):
            return torch.nn.functional.one_hot(torch.zeros(len(input_ids), dtype=torch.long), len(info(self).classes)).float() + self.w

    data = Labelled()
    support = {c: int((data.y == i).sum()) for i, c in enumerate(Labelled.classes)}
    first = Labelled.classes[0]
    m = pela.evaluate(AlwaysFirst(list(Labelled.classes)), data, collate_fn=stack)
    assert m["accuracy"] == pytest.approx(support[first] / len(data)) and m["balanced_accuracy"] == pytest.approx(1 / 3)
    f1 = 2 * support[first] / (support[first] + len(data))  # all predicted first: precision support/n, recall 1
    assert m["macro_f1"] == pytest.approx(f1 / 3)
    assert m["per_class"][first] == {"support": support[first], "recall": 1.0, "precision": pytest.approx(support[first] / len(data)),
                                     "f1": pytest.approx(f1)}
    assert {c: s["support"] for c, s in m["per_class"].items()} == support
    assert all(m["per_class"][c]["recall"] == m["per_class"][c]["f1"] == 0.0 for c in Labelled.classes[1:])
    # a model with a class the data lacks: that class has no recall, and the averages leave it out
    m = pela.evaluate(ByFirstToken(["c", "x", "a", "b"]), data, collate_fn=stack)
    assert set(m["per_class"]) == {"a", "b", "c"} and m["balanced_accuracy"] == m["macro_f1"] == 1.0


def test_evaluating_a_head_of_another_size_warns():
    from conftest import timm_vit

    model = timm_vit()  # 5 outputs, no class names; the data has 4 classes
    with pytest.warns(UserWarning, match="the data has 4 classes and the model 5 outputs: labels are read as output indices"):
        pela.evaluate(model, FourImages(), collate_fn=stack)
    model.reset_classifier(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pela.evaluate(model, FourImages(), collate_fn=stack)


def test_a_class_the_model_was_not_trained_on_counts_as_errors():
    """A test set holds a class a small training set lacked: every example is scored, those as errors, and a warning says so."""
    data = Labelled()  # classes a, b, c
    with pytest.warns(UserWarning, match=r"the data has 1 class the model was not trained on: 'c' \((\d+) examples\); their \1 examples count as errors"):
        metrics = pela.evaluate(ByFirstToken(["b", "a"]), data, collate_fn=stack)
    unseen = int((data.y == 2).sum())
    assert metrics["samples"] == len(data) and metrics["accuracy"] == pytest.approx(1 - unseen / len(data))
    assert metrics["per_class"]["c"] == {"support": unseen, "recall": 0.0, "precision": 0.0, "f1": 0.0}
    assert metrics["per_class"]["a"]["recall"] == 1.0 and metrics["balanced_accuracy"] == pytest.approx(2 / 3)
