"""No code runs from a file pela loads: pickles are refused, or read with torch.load(weights_only=True) behind --allow-pickle."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from conftest import TIMM_VIT

import pela
from pela import PelaError
from pela.cli.app import main
from pela.models.weights import load_pickled_tensors


class Payload:
    """Unpickling this calls os.mkdir(marker): proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def plant(path, marker, as_torch=True):
    obj = {"weight": torch.zeros(2), "evil": Payload(marker)}
    if as_torch:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("as_torch", [True, False], ids=["torch.save zip", "raw pickle"])
@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors"])
@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allow-pickle"])
def test_malicious_checkpoint_never_runs(tmp_path, capsys, as_torch, name, allow):
    marker = tmp_path / "PWNED"
    evil = plant(tmp_path / name, marker, as_torch)
    code, err = run(capsys, "compress", "timm:vit_tiny_patch16_224", "--checkpoint", evil, "--out", tmp_path / "o",
                    *(["--config", "allow_pickle=true"] if allow else []))
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ")
    assert ("weights_only" in err) if allow else ("pickle" in err)
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_malicious_hf_weights_never_run(tmp_path, capsys, hf_bert_dir):
    marker = tmp_path / "PWNED"
    (hf_bert_dir / "model.safetensors").unlink()
    plant(hf_bert_dir / "pytorch_model.bin", marker)
    for extra in ([], ["--config", "allow_pickle=true"]):
        code, err = run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "o", *extra)
        assert code == 2 and not marker.exists(), err
    assert "loaded only with allow_pickle=true" in run(capsys, "compress", hf_bert_dir, "--out", tmp_path / "o")[1]


def test_allow_pickle_reads_a_legitimate_state_dict(tmp_path):
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "legacy.pth")  # a training script's usual wrapper
    with pytest.raises(PelaError, match="allow_pickle=true"):
        pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "legacy.pth"), **TIMM_VIT)
    again = pela.load("timm:vit_tiny_patch16_224", checkpoint=str(tmp_path / "legacy.pth"), allow_pickle=True, **TIMM_VIT)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_not_a_state_dict_is_refused(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(PelaError, match="does not hold a state dict"):
        load_pickled_tensors(tmp_path / "list.pt")


def test_metadata_is_data_not_code(tmp_path, capsys):
    """pela.json is parsed with json; a hostile one is only a wrong value, reported as such."""
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    path = pela.save_pretrained(model, tmp_path / "m")
    meta = json.loads((path / "pela.json").read_text())
    meta["source"] = {"kind": "timm", "name": "__import__('os').system('touch PWNED')", "kwargs": {}}
    (path / "pela.json").write_text(json.dumps(meta))
    with pytest.raises(PelaError, match="no model named"):
        pela.load(path)
    assert not (tmp_path / "PWNED").exists() and not os.path.exists("PWNED")


def test_malicious_timm_directory_weights_never_run(tmp_path, capsys):
    """A timm-format directory (config.json + pytorch_model.bin) with a planted pickle: refused, never run."""
    import timm

    marker = tmp_path / "PWNED"
    timm.models.save_for_hf(timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM_VIT), str(tmp_path / "t"))
    plant(tmp_path / "t" / "pytorch_model.bin", marker)
    for extra in ([], ["--config", "allow_pickle=true"]):
        code, err = run(capsys, "compress", tmp_path / "t", "--out", tmp_path / "o", *extra)
        assert code == 2 and err.strip().startswith("error: ") and not marker.exists(), err
    assert "loaded only with allow_pickle=true" in run(capsys, "compress", tmp_path / "t", "--out", tmp_path / "o")[1]
