"""pela.data.inputs: the API takes the data people hold: a datasets.Dataset, a list of texts, (text, label) pairs."""

import datasets
import pytest

import pela
from pela import DistillConfig, FinetuneConfig, LowRankConfig, PelaError
from pela.data.inputs import as_dataset
from pela.metadata import info

TEXTS = [f"w{i} w{i % 7} w{(3 * i) % 11}" for i in range(32)]


def _pair(hf_bert_dir):
    teacher, student = pela.load(str(hf_bert_dir)), pela.load(str(hf_bert_dir))
    pela.compress(student, LowRankConfig(ratio=4, align=1))
    return student, teacher


def test_a_list_of_texts_calibrates_distills_and_compares(hf_bert_dir):
    student, teacher = _pair(hf_bert_dir)
    assert as_dataset(TEXTS)[3] == {"text": TEXTS[3]}
    assert pela.calibrate(pela.load(str(hf_bert_dir)), TEXTS).samples == 32
    result = pela.distill(student, teacher, TEXTS, DistillConfig(steps=2, batch_size=8), eval_data=TEXTS[:8], eval_samples=8)
    assert result.steps == 2 and result.evals and pela.compare(student, teacher, TEXTS, samples=8)["samples"] == 8


def test_text_label_pairs_fine_tune_and_evaluate(hf_bert_dir):
    pairs = [(text, "odd" if i % 2 else "even") for i, text in enumerate(TEXTS)]
    tuned, _ = pela.finetune(pela.load(str(hf_bert_dir)), pairs, FinetuneConfig(steps=2, batch_size=8), eval_data=pairs[:8])
    assert info(tuned).classes == ["even", "odd"] and pela.evaluate(tuned, pairs)["samples"] == 32
    with pytest.raises(PelaError, match="a list of examples holds texts or \\(text, label\\) pairs; item 1 is int 3"):
        as_dataset([3, 4])


def test_a_hugging_face_dataset_with_its_class_names(hf_bert_dir):
    features = datasets.Features({"sentence": datasets.Value("string"), "intent": datasets.ClassLabel(names=["greet", "travel"])})
    ds = datasets.Dataset.from_dict({"sentence": TEXTS, "intent": [i % 2 for i in range(32)]}, features=features)
    tuned, _ = pela.finetune(pela.load(str(hf_bert_dir)), ds, FinetuneConfig(steps=2, batch_size=8))
    assert info(tuned).classes == ["greet", "travel"]
    view = ds.shuffle(seed=0).select(range(10))  # a view in another order: read in its own order
    assert as_dataset(view)[0]["text"] == view[0]["sentence"] and as_dataset(view)[0]["label"] == view[0]["intent"]
    assert pela.evaluate(tuned, view)["samples"] == 10
    with pytest.raises(PelaError, match=r"pass one split of the DatasetDict \(its splits: train, test\), e.g. data\['train'\]"):
        pela.finetune(tuned, datasets.DatasetDict({"train": ds, "test": view}))


def test_a_streaming_dataset_is_refused_with_what_to_do():
    stream = datasets.Dataset.from_dict({"text": TEXTS}).to_iterable_dataset()
    with pytest.raises(PelaError, match=r"take examples first: datasets.Dataset.from_list\(list\(data.take\(N\)\)\)"):
        as_dataset(stream)
