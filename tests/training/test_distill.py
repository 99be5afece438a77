import warnings

import pytest
import torch
from conftest import ARCHITECTURES, Tokens, hf_bert, pair, stack, timm_swin, timm_vit
from torch.utils.data import Dataset

import pela
from pela import DistillConfig, PelaError
from pela.arch.blocks import find_blocks
from pela.metadata import info


class Images(Dataset):
    def __init__(self, n=16, classes=5):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, classes, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def test_distill_reduces_feature_gap_and_freezes_teacher():
    student, teacher = pair(hf_bert)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    data = Tokens()
    gap = lambda: pela.compare(student, teacher, data, collate_fn=stack, samples=32)["mean_mse"]  # noqa: E731
    start = gap()
    result = pela.distill(student, teacher, data, DistillConfig(steps=40, batch_size=16, lr=1e-4, warmup=0.1, log_every=5), collate_fn=stack)
    assert gap() < 0.5 * start
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before_teacher.items())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert [row["step"] for row in result.history] == list(range(5, 41, 5))
    assert {"feature", "loss", "lr", "items_per_s"} <= set(result.history[-1])


def test_one_student_forward_per_step():
    student, teacher = pair(hf_bert)
    calls = []
    student.register_forward_hook(lambda *a: calls.append(1))
    pela.distill(student, teacher, Tokens(), DistillConfig(steps=3, batch_size=8, grad_accum=2), collate_fn=stack)
    assert len(calls) == 3 * 2  # one forward per micro-batch, never a second pass


def test_all_loss_terms_on_an_image_classifier():
    student, teacher = pair(timm_vit)
    result = pela.distill(student, teacher, Images(), DistillConfig(steps=2, batch_size=8, beta=1.0, gamma=1.0, log_every=1), collate_fn=stack)
    assert {"feature", "logit", "task", "weight_reg"} <= set(result.history[-1])


class NamedImages(Images):
    """Images with class names, as an image folder has them."""

    def __init__(self, classes):
        super().__init__(classes=len(classes))
        self.classes = list(classes)


@pytest.mark.parametrize("classes, fits", [
    (["0", "1", "2", "3", "4"], True),  # as many classes as the head has outputs, named by index
    (["a", "b", "c", "d", "e"], True),  # the model does not name its classes: they are taken to match
    (["cat", "dog"], False),  # a 2-class folder against a 5-class head: labels 0 and 1 are not cat and dog
])
def test_task_loss_only_when_the_labels_index_the_models_head(classes, fits):
    student, teacher = pair(timm_vit)  # 5 outputs
    config = DistillConfig(steps=1, batch_size=8, log_every=1)
    if fits:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = pela.distill(student, teacher, NamedImages(classes), config, collate_fn=stack)
    else:
        with pytest.warns(UserWarning, match="without the task loss: the data has 2 classes and the model's head 5 outputs"):
            result = pela.distill(student, teacher, NamedImages(classes), config, collate_fn=stack)
    assert ("task" in result.history[-1]) == fits


@pytest.mark.parametrize("names, fits", [
    (["a", "b", "c", "d", "q"], False),  # some of the same names: another label set
    (["v", "w", "x", "y", "z"], True),  # no name in common (synset folders, readable names): indices are trusted
])
def test_task_loss_and_the_classes_the_model_names(names, fits):
    student, teacher = pair(timm_vit)
    info(student).classes = names  # a model pela fine-tuned on these classes
    config = DistillConfig(steps=1, batch_size=8, log_every=1)
    if fits:
        result = pela.distill(student, teacher, NamedImages("abcde"), config, collate_fn=stack)
    else:
        with pytest.warns(UserWarning, match="the data's classes are not the head's \\('e' is not among them\\)"):
            result = pela.distill(student, teacher, NamedImages("abcde"), config, collate_fn=stack)
    assert ("task" in result.history[-1]) == fits


@pytest.mark.parametrize("make", [timm_swin, ARCHITECTURES["hf_clip"]])
def test_nested_and_two_tower_models(make):
    student, teacher = pair(make)
    if make is timm_swin:
        data, collate = Images(), stack
    else:
        class Pairs(Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, i):
                return {"input_ids": torch.arange(6) + i, "pixel_values": torch.randn(3, 32, 32)}
        data, collate = Pairs(), stack
    result = pela.distill(student, teacher, data, DistillConfig(steps=2, batch_size=4, log_every=1), collate_fn=collate)
    assert result.history[-1]["feature"] > 0


@pytest.mark.parametrize("data, trained, untouched", [(Images, "vision_model.", "text_model."), (Tokens, "text_model.", "vision_model.")])
def test_two_tower_model_distills_the_tower_its_data_feeds(data, trained, untouched):
    """CLIP distilled on images alone (or text alone) trains that tower; the other is left exactly as it was."""
    student, teacher = pair(ARCHITECTURES["hf_clip"])
    before = {k: v.clone() for k, v in student.state_dict().items()}
    examples = data(n=8)
    result = pela.distill(student, teacher, examples, DistillConfig(steps=2, batch_size=4, task=0.0, log_every=1), collate_fn=stack)
    assert result.history[-1]["feature"] > 0
    after = student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(trained))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(untouched))
    with torch.no_grad():  # compare runs the same tower
        assert pela.compare(student, teacher, examples, collate_fn=stack)["mean_mse"] > 0


def test_encoder_decoder_distills_both_stacks_on_plain_text():
    """T5 fed text alone: its decoder reads the text shifted (arch.with_decoder_inputs), and the blocks of
    both stacks are distilled."""
    student, teacher = pair(ARCHITECTURES["hf_t5"])
    blocks = find_blocks(student)
    assert [b for b in blocks if b.startswith("encoder.")] and [b for b in blocks if b.startswith("decoder.")]
    result = pela.distill(student, teacher, Tokens(n=16), DistillConfig(steps=2, batch_size=4, beta=1.0, log_every=1), collate_fn=stack)
    assert result.history[-1]["feature"] > 0 and result.history[-1]["logit"] > 0


def test_decoder_blocks_are_masked_with_the_decoders_mask():
    """The decoder reads the text shifted right: its mask keeps one token more than the encoder's."""
    from pela.arch.inputs import block_masks

    student, _ = pair(ARCHITECTURES["hf_t5"])
    blocks = find_blocks(student)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    masks = block_masks(student, blocks, {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": mask})
    for block, m in zip(blocks, masks):
        expected = [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]] if block.startswith("decoder.") else mask.tolist()
        assert m.tolist() == expected, block
    bert, _ = pair(hf_bert)
    assert all(m is mask for m in block_masks(bert, find_blocks(bert), {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": mask}))


def test_block_shared_across_depth_gives_one_feature_per_call():
    """ALBERT runs one layer's weights at every depth: each call is distilled and compared as its own layer."""
    from transformers import AlbertConfig, AlbertModel

    make = lambda: AlbertModel(AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3,  # noqa: E731
                                            num_attention_heads=2, intermediate_size=64)).eval()
    student, teacher = pair(make)
    assert len(find_blocks(teacher)) == 1
    report = pela.compare(student, teacher, Tokens(), collate_fn=stack, samples=16)
    labels = [b["block"] for b in report["blocks"]]
    assert len(labels) == 3 and labels[0].endswith("#0") and labels[2].endswith("#2")
    assert len({b["mse"] for b in report["blocks"]}) == 3  # three different depths, three different gaps
    result = pela.distill(student, teacher, Tokens(), DistillConfig(steps=2, batch_size=8, log_every=1), collate_fn=stack)
    assert result.history[-1]["feature"] > 0


def test_pair_and_config_errors():
    student, _ = pair(hf_bert)
    from transformers import BertConfig, BertModel

    other = BertModel(BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(PelaError, match="different architectures"):
        pela.distill(student, other, Tokens(), DistillConfig(steps=1, batch_size=8), collate_fn=stack)
    with pytest.raises(PelaError, match="teacher is itself compressed"):
        pela.distill(student, student, Tokens(), DistillConfig(steps=1, batch_size=8), collate_fn=stack)
    with pytest.raises(PelaError, match="fewer than the batch size"):
        s, t = pair(hf_bert)
        pela.distill(s, t, Tokens(n=4), DistillConfig(steps=1, batch_size=8), collate_fn=stack)
    for kwargs in (dict(steps=0), dict(batch_size=0), dict(lr=-1), dict(alpha=0, task=0), dict(steps=2, epochs=1.0)):
        with pytest.raises(PelaError):
            DistillConfig(**kwargs)


def test_held_out_evaluations_and_the_best_student(tmp_path):
    config = DistillConfig(steps=8, batch_size=8, lr=1e-3)
    plain, teacher = pair(hf_bert)
    pela.distill(plain, teacher, Tokens(), config, collate_fn=stack)
    student, teacher = pair(hf_bert)
    watched = DistillConfig(steps=8, batch_size=8, lr=1e-3, eval_every=3)
    result = pela.distill(student, teacher, Tokens(), watched, collate_fn=stack, eval_data=Tokens(24, seed=1), eval_samples=16)
    assert [e["step"] for e in result.evals] == [3, 6, 8] and set(result.evals[0]) == {"step", "mean_mse", "mean_cosine", "output_agreement"}
    # the evaluations' passes do not reach the training's feature hooks, nor change its random numbers
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), student.state_dict().values()))
    held = pela.compare(student, teacher, Tokens(24, seed=1), collate_fn=stack, samples=16)
    assert held["mean_mse"] == pytest.approx(result.evals[-1]["mean_mse"], rel=1e-6)
    assert result.evals[-1]["mean_mse"] < result.evals[0]["mean_mse"]  # it learns the teacher on held-out data too

    # held-out feature MSE picks the best student by its lowest value (restoring it: tests/test_finetune.py)
    student, teacher = pair(hf_bert)
    best = DistillConfig(steps=10, batch_size=8, lr=0.05, eval_every=2, keep_best="mean_mse")
    result = pela.distill(student, teacher, Tokens(), best, collate_fn=stack, eval_data=Tokens(24, seed=1), eval_samples=16, out=tmp_path)
    mses = [e["mean_mse"] for e in result.evals]
    assert result.best == {"step": result.evals[mses.index(min(mses))]["step"], "mean_mse": min(mses)} and min(mses) < max(mses)
    assert pela.compare(student, teacher, Tokens(24, seed=1), collate_fn=stack, samples=16)["mean_mse"] == pytest.approx(min(mses), rel=1e-6)
    with pytest.raises(PelaError, match="keep_best must be one of mean_mse"):
        DistillConfig(keep_best="loss")
