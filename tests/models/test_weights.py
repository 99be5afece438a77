"""pela.models.weights: weights read safely."""

import pickle

import pytest
import torch
from torch import nn

import pela
from pela import PelaError
from pela.models.weights import check_safetensors


def test_bad_weight_files(tmp_path, mlp):
    pela.save_pretrained(mlp, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(PelaError, match="not a valid safetensors"):
        check_safetensors(weights)
    torch.save(mlp.state_dict(), weights)  # a pickle/zip renamed .safetensors
    with pytest.raises(PelaError, match="pickle"):
        check_safetensors(weights)
    weights.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(PelaError, match="pickle"):
        check_safetensors(weights)
    weights.write_bytes(b"abc")
    with pytest.raises(PelaError, match="not a safetensors"):
        check_safetensors(weights)


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_safetensors_whose_header_length_looks_like_a_pickle(tmp_path, first_bytes):
    """A header 0x..80 bytes long starts the file with 0x80 (pickle's first byte), one of 0x4b50 with
    "PK" (zip's): such files are found among real checkpoints, and are still valid safetensors."""
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(path), metadata={"pad": ""})
    target = int.from_bytes(first_bytes + b"\x0a", "little")  # a header length with these low bytes
    base = int.from_bytes(path.read_bytes()[:8], "little")
    for pad in range(target - base - 16, target - base + 16):  # the header grows by one byte per character
        save_file({"w": torch.ones(2, 2)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes().startswith(first_bytes):
            break
    else:
        pytest.fail(f"no padding gave a header starting with {first_bytes!r}")
    assert check_safetensors(path) == path


def test_shape_mismatch_is_refused(tmp_path, mlp):
    pela.save_pretrained(mlp, tmp_path / "m")
    other = nn.Sequential(nn.Linear(64, 90), nn.GELU(), nn.Linear(90, 64), nn.GELU(), nn.Linear(64, 4))
    with pytest.raises(PelaError, match="shape mismatch"):
        pela.load(tmp_path / "m", model=other)
