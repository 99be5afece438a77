import warnings

import pytest
import torch
from conftest import FourImages, Labelled, hf_bert, stack
from torch.utils.data import Dataset

import pela
from pela import FinetuneConfig, LowRankConfig, PelaError
from pela.arch.classifier import SequenceClassifier
from pela.metadata import info


class Quadrants(FourImages):
    """The class is which quadrant of the image is bright: a pattern in space, for models that normalize brightness away."""

    def __getitem__(self, i):
        x = torch.zeros(3, 32, 32)
        x[:, 16 * (i % 2):16 * (i % 2) + 16, 16 * (i % 4 // 2):16 * (i % 4 // 2) + 16] = 1.0
        return {"pixel_values": x, "labels": torch.tensor(i % 4)}




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
    model, _ = pela.finetune(model, FourImages(), FinetuneConfig(steps=2, batch_size=8), collate_fn=stack)
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
        pela.finetune(model, FourImages(), FinetuneConfig(steps=1, batch_size=4), collate_fn=stack)


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


@pytest.mark.parametrize("data, tower", [(FourImages, "vision_model"), (Labelled, "text_model")])
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
















