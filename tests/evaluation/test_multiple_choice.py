"""Zero-shot multiple-choice scoring of language models by log-likelihood."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_llama, word_tokenizer

import pela
from pela import PelaError
from pela.cli.app import main
from pela.data.choices import ChoiceExample
from pela.evaluation.multiple_choice import _log_likelihoods, _tokens


def test_a_choice_scores_the_log_probability_of_its_tokens_given_the_prompt():
    model, tok = tiny_llama(), word_tokenizer()
    seqs = [(0, 0, *_tokens(tok, [], "w1 w2 w3", "w4 w5", None)), (0, 1, *_tokens(tok, [], "w1", "w9", None))]
    assert seqs[0][2] == [4, 5, 6, 7, 8] and seqs[0][3] == 2  # w1 w2 w3 | w4 w5
    with torch.no_grad():
        got = _log_likelihoods(model, seqs, torch.device("cpu"))  # one batch, the second sequence padded
    for (_, _, ids, ending), score in zip(seqs, got):
        with torch.no_grad():
            logp = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)  # alone, no padding
        want = sum(float(logp[t - 1, ids[t]]) for t in range(len(ids) - ending, len(ids)))
        assert score == pytest.approx(want, abs=1e-4)


def test_accuracy_follows_the_models_own_preferences():
    model, tok = tiny_llama(), word_tokenizer()
    prompts = [" ".join(f"w{(7 * i + j) % 97}" for j in range(3 + i % 4)) for i in range(12)]
    examples = []
    for p in prompts:
        ids = torch.tensor([tok(p)["input_ids"]])
        order = model(input_ids=ids).logits[0, -1].argsort(descending=True)
        best, worst = f"w{int(order[0]) - 3}", f"w{int(order[-1]) - 3}"  # tokens 3..99 are words
        if int(order[0]) < 3 or int(order[-1]) < 3:
            continue
        examples.append(ChoiceExample(p, (worst, best), 1))
    assert len(examples) >= 6
    right = pela.multiple_choice(model, examples, tokenizer=tok, batch_size=3)
    assert right["accuracy"] == 1.0 and right["examples"] == len(examples) and right["choices"] == 2 * len(examples)
    wrong = pela.multiple_choice(model, [ChoiceExample(e.prompt, e.choices, 0) for e in examples], tokenizer=tok)
    assert wrong["accuracy"] == 0.0


def test_length_normalized_accuracy_divides_by_each_choices_bytes(monkeypatch):
    from pela.evaluation import multiple_choice as module

    monkeypatch.setattr(module, "_log_likelihoods", lambda model, group, dev: [-2.0 if c == 0 else -4.0 for _, c, _, _ in group])
    got = pela.multiple_choice(tiny_llama(), [ChoiceExample("w1", ("w2", "w3 w4 w5 w6"), 1)], tokenizer=word_tokenizer())
    assert got["accuracy"] == 0.0 and got["accuracy_norm"] == 1.0  # -2/2 bytes < -4/11 bytes


def test_multiple_choice_needs_a_language_model(tmp_path):
    from conftest import hf_bert

    with pytest.raises(PelaError, match="causal language model"):
        pela.multiple_choice(hf_bert(), [ChoiceExample("a", ("b", "c"), 0)])
    with pytest.raises(PelaError, match="batch size"):
        pela.multiple_choice(tiny_llama(), [ChoiceExample("a", ("b", "c"), 0)], batch_size=0)


def test_eval_choices_on_the_command_line(tmp_path, capsys):
    model, tok = tiny_llama(), word_tokenizer()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    rows = [{"question": f"w{i} w{i + 1}", "choices": [f"w{i + 2}", f"w{i + 3} w{i + 4}"], "answer": i % 2} for i in range(10)]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["eval", str(tmp_path / "lm"), "--data", str(tmp_path / "mc.jsonl"), "--choices", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = json.loads(out)
    want = pela.multiple_choice(pela.load(tmp_path / "lm"), tmp_path / "mc.jsonl")
    assert got["examples"] == 10 and got["accuracy"] == want["accuracy"] and got["accuracy_norm"] == want["accuracy_norm"]
    assert main(["eval", str(tmp_path / "lm"), "--data", str(tmp_path / "mc.jsonl"), "--choices", "--perplexity"]) == 2
    assert main(["eval", str(tmp_path / "lm"), "--data", str(tmp_path / "mc.jsonl"), "--config", "choices_field=x"]) == 2
    assert main(["eval", str(tmp_path / "lm"), "--data", str(tmp_path / "mc.jsonl"), "--choices", "--config", "choices_field=x"]) == 2
    assert "no field 'x'" in capsys.readouterr().err
