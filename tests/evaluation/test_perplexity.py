import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS, hf_bert, tiny_llama, word_tokenizer

from pela import PelaError
from pela.data.packing import token_stream
from pela.evaluation.perplexity import perplexity, windows


@pytest.mark.parametrize("n, context, stride", [(100, 16, 16), (100, 16, 5), (17, 16, 1), (5, 16, 8), (64, 64, 64)])
def test_windows_score_each_token_once_with_context_before_it(n, context, stride):
    scored = []
    for begin, end, count in windows(n, context, stride):
        assert end - begin <= context and count <= end - begin - 1  # every scored token has one before it in the window
        scored += range(end - count, end)
    assert scored == sorted(set(scored))  # once each, in order
    if stride < context:
        assert scored == list(range(1, n))  # overlapping windows: every token after the first
    else:
        assert len(scored) == n - len(windows(n, context, stride))  # each window's first token has no context


def reference(model, stream, context, stride):
    """The transformers docs' sliding-window perplexity loop, written out token by token."""
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(stream), stride):
        end = min(begin + context, len(stream))
        ids = stream[begin:end][None]
        logits = model(input_ids=ids).logits[0]
        for pos in range(1, end - begin):
            if begin + pos >= max(prev_end, 1):
                nll -= float(F.log_softmax(logits[pos - 1].double(), -1)[ids[0, pos]])
                count += 1
        prev_end = end
        if end == len(stream):
            break
    return math.exp(nll / count), count


@pytest.mark.parametrize("context, stride, batch", [(16, 16, 1), (16, 6, 3), (64, 64, 2)])
def test_perplexity_matches_the_sliding_window_definition(context, stride, batch):
    model, tok = tiny_llama(), word_tokenizer()
    with torch.no_grad():
        expected, count = reference(model, token_stream(TEXTS, tok), context, stride)
    got = perplexity(model, TEXTS, context=context, stride=stride, batch_size=batch, tokenizer=tok)
    assert got["tokens"] == count and got["context"] == context and got["stride"] == stride
    assert got["perplexity"] == pytest.approx(expected, rel=1e-5)
    assert 50 < got["perplexity"] < 300  # a random model over 100 words: about the vocabulary size


def test_documents_are_joined_by_the_end_of_text_token():
    tok = word_tokenizer()
    stream = token_stream(["w1 w2", "w3"], tok).tolist()
    assert stream == [4, 5, 2, 6, 2]


def test_perplexity_refuses_what_it_cannot_score():
    tok = word_tokenizer()
    with pytest.raises(PelaError, match="causal language model"):
        perplexity(hf_bert(), TEXTS, tokenizer=tok)
    model = tiny_llama()
    with pytest.raises(PelaError, match="context must be between 2 and the model's 64"):
        perplexity(model, TEXTS, context=65, tokenizer=tok)
    with pytest.raises(PelaError, match="stride must be between 1 and the context"):
        perplexity(model, TEXTS, context=16, stride=17, tokenizer=tok)
    with pytest.raises(PelaError, match="fewer than 2 tokens"):
        perplexity(model, ["w1"], tokenizer=word_tokenizer().__class__(tokenizer_object=tok.backend_tokenizer, unk_token="<unk>"))


def test_eval_perplexity_cli_on_a_saved_model_and_its_compressed_student(tmp_path, capsys):
    import json

    import pela
    from pela.cli.app import main

    model, tok = tiny_llama(), word_tokenizer()
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS) + "\n")
    args = ["eval", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"), "--perplexity", "--config", "context=16", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    direct = perplexity(pela.load(tmp_path / "lm"), TEXTS, context=16, tokenizer=tok)
    assert result["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-5) and result["tokens"] == direct["tokens"]
    assert main(["compress", str(tmp_path / "lm"), "--out", str(tmp_path / "small"), "--ratio", "4", "--config", "align=1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "small"), "--data", str(tmp_path / "corpus.txt"), "--perplexity", "--config", "context=16"]) == 0
    assert "perplexity " in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "lm"), "--data", str(tmp_path / "corpus.txt"), "--config", "stride=4"]) == 2
    assert capsys.readouterr().err.startswith("error: context and stride are settings of --perplexity")
