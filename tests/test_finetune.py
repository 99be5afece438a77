import json
import warnings

import pytest
import torch
from conftest import hf_bert
from torch.utils.data import Dataset

import pela
from pela import FinetuneConfig, LowRankConfig, PelaError
from pela.arch.classifier import SequenceClassifier
from pela.metadata import info


class Labelled(Dataset):
    """Token sequences whose class is decided by the first token: learnable in a few steps."""

    classes = ["a", "b", "c"]

    def __init__(self, n=96, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.ids = torch.randint(10, 100, (n, 8), generator=g)
        self.ids[:, 0] = self.y + 1

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.y[i]}


class Images(Dataset):
    classes = [str(i) for i in range(4)]

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return {"pixel_values": torch.full((3, 32, 32), float(i % 4)), "labels": torch.tensor(i % 4)}


class Quadrants(Images):
    """The class is which quadrant of the image is bright: a pattern in space, for models that normalize brightness away."""

    def __getitem__(self, i):
        x = torch.zeros(3, 32, 32)
        x[:, 16 * (i % 2):16 * (i % 2) + 16, 16 * (i % 4 // 2):16 * (i % 4 // 2) + 16] = 1.0
        return {"pixel_values": x, "labels": torch.tensor(i % 4)}


def stack(examples):
    return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}


def test_finetune_learns_and_saves(tmp_path):
    torch.manual_seed(0)
    model = hf_bert()
    pela.compress(model, LowRankConfig(align=1))
    data = Labelled()
    before = pela.evaluate(SequenceClassifier(hf_bert(), 32, 3), data, collate_fn=stack)
    model, result = pela.finetune(model, data, FinetuneConfig(epochs=8, batch_size=16, lr=2e-3), collate_fn=stack)
    metrics = pela.evaluate(model, data, collate_fn=stack)
    assert isinstance(model, SequenceClassifier) and metrics["accuracy"] >= 0.9 > before["accuracy"]
    assert metrics["top5"] is None and metrics["params"] == sum(p.numel() for p in model.parameters())
    pela.save_pretrained(model, tmp_path / "m")  # head, factorized backbone and its HF config
    loaded = pela.load(tmp_path / "m")
    batch = stack([data[i] for i in range(4)])
    batch.pop("labels")
    with torch.no_grad():
        assert torch.equal(loaded(**batch), model(**batch))


def test_timm_head_is_reset_and_recorded():
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    model, _ = pela.finetune(model, Images(), FinetuneConfig(steps=2, batch_size=8), collate_fn=stack)
    assert model.num_classes == 4 and info(model).source["kwargs"]["num_classes"] == 4


def _round_trip(model, tmp_path, data):
    pela.save_pretrained(model, tmp_path / "m")
    loaded = pela.load(tmp_path / "m")
    batch = stack([data[i] for i in range(4)])
    batch.pop("labels")
    out = lambda m: pela.arch.main_output(pela.arch.forward(m, batch))  # noqa: E731
    with torch.no_grad():
        assert torch.equal(out(loaded), out(model))
    return loaded


def test_hf_classifier_with_other_labels_gets_a_new_last_layer(tmp_path):
    """A 5-label RoBERTa classifier fine-tuned on 3 classes keeps its head's dense layer; only out_proj is new."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    model = RobertaForSequenceClassification(RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                           intermediate_size=64, max_position_embeddings=70, num_labels=5))
    dense = model.classifier.dense.weight.detach().clone()
    pela.compress(model, LowRankConfig(align=1))
    tuned, _ = pela.finetune(model, Labelled(), FinetuneConfig(steps=2, batch_size=16), collate_fn=stack)
    assert type(tuned).__name__ == "RobertaForSequenceClassification"  # not wrapped: its own head, resized
    assert tuned.classifier.out_proj.out_features == 3 and tuned.config.num_labels == 3
    assert tuned.config.id2label == {0: "a", 1: "b", 2: "c"}  # transformers users see the classes too
    assert tuned.classifier.dense.weight.shape == dense.shape
    _round_trip(tuned, tmp_path, Labelled())


def test_hf_model_with_another_head_is_pooled_from_hidden_states(tmp_path):
    """A masked-LM model's main output is vocabulary logits: the new head must read hidden states instead."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    pela.compress(model, LowRankConfig(align=1))
    tuned, _ = pela.finetune(model, Labelled(), FinetuneConfig(epochs=8, batch_size=16, lr=2e-3), collate_fn=stack)
    assert isinstance(tuned, SequenceClassifier) and tuned.hidden_states
    assert pela.evaluate(tuned, Labelled(), collate_fn=stack)["accuracy"] >= 0.9
    _round_trip(tuned, tmp_path, Labelled())


def test_hierarchical_vision_model_gets_a_head_on_its_feature_map(tmp_path):
    """Segformer's config lists a width per stage and its last states are a B×C×H×W map, not tokens."""
    from transformers import SegformerConfig, SegformerModel

    torch.manual_seed(0)
    model = SegformerModel(SegformerConfig(image_size=32, hidden_sizes=[8, 16, 16, 24], depths=[1, 1, 1, 1],
                                           num_attention_heads=[1, 1, 2, 2])).eval()
    assert pela.arch.hidden_size(model) == 24
    pela.compress(model, LowRankConfig(align=1, exclude=[]))
    data = Quadrants()
    before = pela.evaluate(SequenceClassifier(model, 24, 4), data, collate_fn=stack)["accuracy"]
    tuned, _ = pela.finetune(model, data, FinetuneConfig(epochs=8, batch_size=8, lr=3e-3), collate_fn=stack)
    assert isinstance(tuned, SequenceClassifier) and tuned.head.in_features == 24
    assert pela.evaluate(tuned, data, collate_fn=stack)["accuracy"] >= 0.9 > before
    _round_trip(tuned, tmp_path, data)


def test_model_that_reads_inputs_of_several_kinds_says_which_the_data_lacks():
    """BLIP's image-text matching reads text and image together: on images alone, a line that says so
    (before: the images were passed by position and landed on input_ids)."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = BlipForImageTextRetrieval(BlipConfig(text_config=dict(vocab_size=100, max_position_embeddings=32, **tiny),
                                                 vision_config=dict(image_size=32, patch_size=8, **tiny), projection_dim=16))
    with pytest.raises(PelaError, match="BlipForImageTextRetrieval needs 'input_ids' too, and the data gives only pixel_values"):
        pela.finetune(model, Images(), FinetuneConfig(steps=1, batch_size=4), collate_fn=stack)


def test_timm_model_built_outside_pela_rebuilds_from_timms_record(tmp_path):
    """A model made by timm.create_model directly: timm's record of its arguments rebuilds it."""
    import timm

    kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs)
    pela.compress(model, LowRankConfig(align=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pela.save_pretrained(model, tmp_path / "m")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(pela.load(tmp_path / "m")(x), model.eval()(x))

    del model._model_args  # an older timm, or a model timm kept no record of: pela warns, records no source
    with pytest.warns(UserWarning, match="does not rebuild"):
        pela.save_pretrained(model, tmp_path / "n")
    with pytest.raises(PelaError, match="pass the dense model"):
        pela.load(tmp_path / "n")
    loaded = pela.load(tmp_path / "n", model=timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs))
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_lora_trains_adapters_and_merges_back():
    torch.manual_seed(0)
    model = hf_bert()
    pela.compress(model, LowRankConfig(align=1))
    n_before = sum(p.numel() for p in model.parameters())
    backbone_before = {k: v.clone() for k, v in model.state_dict().items()}
    model, _ = pela.finetune(model, Labelled(), FinetuneConfig(steps=3, batch_size=16, lr=1e-2, lora=4), collate_fn=stack)
    assert isinstance(model, SequenceClassifier)
    assert sum(p.numel() for p in model.parameters()) == n_before + 32 * 3 + 3  # adapters merged, only the head added
    after = model.backbone.state_dict()
    changed = [k for k, v in backbone_before.items() if not torch.equal(v, after[k])]
    assert changed and all(".a." in k or ".b." in k or "dense" in k or "query" in k or "key" in k or "value" in k for k in changed)


def _gpt2_lm():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=16))


def _llama_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=1, intermediate_size=64))


def _t5():
    from conftest import hf_t5

    return hf_t5()


@pytest.mark.parametrize("build", [_gpt2_lm, _llama_lm, _t5])
@pytest.mark.parametrize("lora", [None, 4])
def test_language_model_backbones_get_a_pooled_head(tmp_path, build, lora):
    """A language model (whose own output is next-token logits) is pooled from its last hidden states (an
    encoder-decoder's decoder's); its language-model head is neither run, trained nor given LoRA adapters."""
    torch.manual_seed(0)
    model = build()
    pela.compress(model, LowRankConfig(align=1))
    lm_head = model.lm_head.weight.detach().clone()
    tuned, _ = pela.finetune(model, Labelled(), FinetuneConfig(steps=3, batch_size=16, lr=1e-2, lora=lora), collate_fn=stack)
    assert isinstance(tuned, SequenceClassifier) and tuned.hidden_states and tuned.head.in_features == 32
    tied = tuned.backbone.lm_head.weight is tuned.backbone.get_input_embeddings().weight  # GPT-2's is the embedding
    # (T5's pooled decoder states are scaled by d_model**-0.5 before its tied head: a head it never runs here)
    assert torch.equal(tuned.backbone.lm_head.weight, lm_head) or (tied and not lora)
    assert pela.evaluate(tuned, Labelled(n=16), collate_fn=stack)["accuracy"] is not None
    pela.save_pretrained(tuned, tmp_path / "m")
    batch = stack([Labelled()[i] for i in range(4)])
    batch.pop("labels")
    with torch.no_grad():
        assert torch.equal(pela.load(tmp_path / "m")(**batch), tuned(**batch))


@pytest.mark.parametrize("data, tower", [(Images, "vision_model"), (Labelled, "text_model")])
def test_two_tower_model_classifies_with_the_tower_its_data_feeds(tmp_path, data, tower):
    """CLIP fine-tuned on labelled images alone is an image classifier on its vision tower (and on text
    alone, a text classifier on its text tower); the choice is saved with the model."""
    from conftest import hf_clip

    torch.manual_seed(0)
    model = hf_clip()
    pela.compress(model, LowRankConfig(align=1))
    tuned, _ = pela.finetune(model, data(), FinetuneConfig(steps=2, batch_size=8), collate_fn=stack)
    assert isinstance(tuned, SequenceClassifier) and tuned.tower == tower and tuned.head.in_features == 32
    pela.save_pretrained(tuned, tmp_path / "m")
    loaded = pela.load(tmp_path / "m")
    batch = stack([data()[i] for i in range(4)])
    batch.pop("labels")
    with torch.no_grad():
        assert loaded.tower == tower and torch.equal(loaded(**batch), tuned(**batch))


def test_errors():
    class Unlabelled(Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"input_ids": torch.arange(4)}

    with pytest.raises(PelaError, match="labelled"):
        pela.finetune(hf_bert(), Unlabelled(), FinetuneConfig(steps=1, batch_size=4), collate_fn=stack)
    with pytest.raises(PelaError, match="pooling"):
        FinetuneConfig(pooling="max")
    with pytest.raises(PelaError, match="lora"):
        FinetuneConfig(lora=0)
    with pytest.raises(PelaError, match="fine-tune it first"):
        pela.evaluate(hf_bert(), Labelled(), collate_fn=stack)


class ByFirstToken(torch.nn.Module):
    """A perfect classifier of `Labelled` that numbers its classes its own way (its `pela.metadata.info` classes)."""

    def __init__(self, names):
        super().__init__()
        info(self).classes = names
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        data_class = [Labelled.classes[int(t) - 1] for t in input_ids[:, 0]]
        own = torch.tensor([info(self).classes.index(c) if c in info(self).classes else Labelled.classes.index(c) for c in data_class])
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


def test_hf_classifier_keeps_its_head_rows_for_the_same_classes_in_another_order():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=64, num_labels=3, id2label={0: "b", 1: "c", 2: "a"}))
    assert pela.arch.class_names(model) == ["b", "c", "a"]
    tuned, _ = pela.finetune(model, Labelled(), FinetuneConfig(epochs=8, batch_size=16, lr=2e-3), collate_fn=stack)
    assert info(tuned).classes == ["b", "c", "a"] and tuned.config.id2label == {0: "b", 1: "c", 2: "a"}
    assert pela.evaluate(tuned, Labelled(), collate_fn=stack)["accuracy"] >= 0.9

    class Indexed(Labelled):  # labels 0, 1, 2 (a CSV of SST-2, say): read as the head's indices, its names kept
        classes = ["0", "1", "2"]

    tuned, _ = pela.finetune(tuned, Indexed(), FinetuneConfig(steps=1, batch_size=16), collate_fn=stack)
    assert tuned.config.id2label == {0: "b", 1: "c", 2: "a"}


def test_evaluating_a_head_of_another_size_warns():
    from conftest import timm_vit

    model = timm_vit()  # 5 outputs, no class names; the data has 4 classes
    with pytest.warns(UserWarning, match="the data has 4 classes and the model 5 outputs: labels are read as output indices"):
        pela.evaluate(model, Images(), collate_fn=stack)
    model.reset_classifier(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pela.evaluate(model, Images(), collate_fn=stack)


def _tune(config, out=None, resume=False, collate_fn=stack):
    torch.manual_seed(0)
    model = hf_bert()
    return pela.finetune(model, Labelled(), config, collate_fn=collate_fn, eval_data=Labelled(48, seed=1), out=out, resume=resume)


def test_evaluations_during_training_change_nothing_else(tmp_path):
    config = FinetuneConfig(steps=8, batch_size=16, lr=3e-3)
    plain, _ = _tune(config)
    watched, result = _tune(FinetuneConfig(steps=8, batch_size=16, lr=3e-3, eval_every=3), out=tmp_path)
    assert [e["step"] for e in result.evals] == [3, 6, 8] and result.best is None  # every 3 steps and at the end
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), watched.state_dict().values()))
    last = pela.evaluate(watched, Labelled(48, seed=1), collate_fn=stack)
    assert result.evals[-1]["accuracy"] == last["accuracy"] and result.evals[-1]["loss"] == pytest.approx(last["loss"], rel=1e-6)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval_accuracy" in r] == [3, 6, 8]
    with pytest.raises(PelaError, match="eval_every needs data"):
        pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=2, batch_size=16, eval_every=1), collate_fn=stack)
    with pytest.raises(PelaError, match="keep_best must be one of accuracy"):
        FinetuneConfig(keep_best="acc")


@pytest.mark.parametrize("metric", ["loss", "macro_f1"])
def test_keep_best_returns_the_best_evaluations_weights(metric):
    # a learning rate high enough to overshoot: the best evaluation is not always the last
    tuned, result = _tune(FinetuneConfig(steps=12, batch_size=16, lr=3e-3, eval_every=2, keep_best=metric))
    values = [e[metric] for e in result.evals]
    best = (min if metric == "loss" else max)(values)
    assert result.best == {"step": result.evals[values.index(best)]["step"], metric: best}
    assert pela.evaluate(tuned, Labelled(48, seed=1), collate_fn=stack)[metric] == pytest.approx(best, rel=1e-6)
    if metric == "loss":
        assert result.best["step"] < 12  # this run's loss rises again: the model is not the last one
        last, _ = _tune(FinetuneConfig(steps=12, batch_size=16, lr=3e-3))
        assert pela.evaluate(last, Labelled(48, seed=1), collate_fn=stack)["loss"] > best


def test_keep_best_survives_a_crash_and_resume(tmp_path):
    config = FinetuneConfig(steps=12, batch_size=16, lr=3e-3, eval_every=2, keep_best="loss", save_every=4)
    straight, expected = _tune(config, out=tmp_path / "straight")
    assert expected.best["step"] <= 8  # so that the resumed run must read it from disk
    assert (tmp_path / "straight" / "checkpoints" / "best" / "best.json").is_file()

    calls = {"n": 0}

    def crashing(examples):
        calls["n"] += len(examples) == 16  # training batches (the evaluation's is one of 48)
        if calls["n"] == 11:  # the loader runs one batch ahead: this dies in step 10, after the step-8 checkpoint
            raise KeyboardInterrupt
        return stack(examples)

    with pytest.raises(KeyboardInterrupt):
        _tune(config, out=tmp_path / "crashed", collate_fn=crashing)
    assert (tmp_path / "crashed" / "checkpoints" / "checkpoint-8").is_dir()
    resumed, result = _tune(config, out=tmp_path / "crashed", resume=True)
    assert result.best == expected.best
    assert result.evals == expected.evals  # the whole run's, not only since the resume
    same = ("step", "loss", "task", "lr")  # not the speed or memory of the moment
    assert [{k: r[k] for k in same} for r in result.history] == [{k: r[k] for k in same} for r in expected.history]
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    from pela.training.checkpoint import remove_checkpoints

    remove_checkpoints(tmp_path / "crashed" / "checkpoints")
    assert not (tmp_path / "crashed" / "checkpoints").exists()


def test_patience_stops_after_evaluations_without_a_better_one(tmp_path):
    config = FinetuneConfig(steps=30, batch_size=16, lr=3e-3, eval_every=2, keep_best="loss", patience=2)
    tuned, result = _tune(config, out=tmp_path)
    assert result.stopped_early and result.steps == result.best["step"] + 4 < 30  # two evaluations, 2 steps apart, no better
    assert [e["step"] for e in result.evals] == list(range(2, result.steps + 1, 2))
    assert min(e["loss"] for e in result.evals) == result.best["loss"]
    assert pela.evaluate(tuned, Labelled(48, seed=1), collate_fn=stack)["loss"] == pytest.approx(result.best["loss"], rel=1e-6)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == result.steps and "loss" in logged[-1]  # the last step's training row, though not a log_every step
    _, full = _tune(FinetuneConfig(steps=30, batch_size=16, lr=3e-3, eval_every=2, keep_best="loss"))
    assert not full.stopped_early and full.steps == 30 and full.evals[:len(result.evals)] == result.evals
    with pytest.raises(PelaError, match="patience needs keep_best"):
        FinetuneConfig(eval_every=2, patience=2)


def test_keep_best_with_lora_adapters():
    """Only the adapters and the head train: those are what the best evaluation keeps, before they are merged."""
    tuned, result = _tune(FinetuneConfig(steps=12, batch_size=16, lr=3e-2, eval_every=2, keep_best="loss", lora=4))
    losses = [e["loss"] for e in result.evals]
    assert result.best["step"] == result.evals[losses.index(min(losses))]["step"] < 12
    assert not any("lora" in n for n, _ in tuned.named_parameters())  # merged back
    assert pela.evaluate(tuned, Labelled(48, seed=1), collate_fn=stack)["loss"] == pytest.approx(min(losses), rel=1e-4)


def test_evaluation_data_is_read_by_class_name():
    class Reordered(Labelled):
        classes = ["c", "b", "a"]  # the same classes, numbered the other way round

        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {**item, "labels": 2 - item["labels"]}

    _, straight = _tune(FinetuneConfig(steps=4, batch_size=16, lr=3e-3, eval_every=2))
    torch.manual_seed(0)
    _, reordered = pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=4, batch_size=16, lr=3e-3, eval_every=2),
                                 collate_fn=stack, eval_data=Reordered(48, seed=1))
    assert reordered.evals == straight.evals

    class Other(Labelled):
        classes = ["a", "b", "z"]

    with pytest.raises(PelaError, match="the evaluation data has classes the training data lacks: 'z'"):
        pela.finetune(hf_bert(), Labelled(), FinetuneConfig(steps=2, batch_size=16, eval_every=1), collate_fn=stack, eval_data=Other(48))
