"""pela.compression.replay: a probe replays the blocks from the perturbed one on, and measures what a full pass would."""


import pytest
import torch
from conftest import ARCHITECTURES, Tokens, stack

import pela
from pela.compression import allocate, replay
from pela.compression.calibrate import calibrate
from pela.compression.replay import BlockCalls


def _probes(model, data, collate):
    calibration = calibrate(model, data, collate_fn=collate, samples=16, probe_samples=8)
    layers = []
    for name, module in model.named_modules():
        wb = pela.arch.linear_weight(module)
        if wb is not None and wb[0].shape[0] > 8 and "pooler" not in name:
            w = wb[0].detach()
            u, s, v = torch.linalg.svd(w, full_matrices=False)
            d = (u[:, :4] * s[:4]) @ v[:4] - w  # rank 4 minus the layer
            layers.append((name, module, lambda d=d: d, float((s[4:] ** 2).sum())))
    return layers, calibration.probe


def _images(n=16):
    g = torch.Generator().manual_seed(0)
    return [{"pixel_values": torch.randn(3, 32, 32, generator=g)} for _ in range(n)]


@pytest.mark.parametrize("name", ["hf_bert", "timm_vit", "hf_gpt2", "hf_t5", "timm_swin"])
def test_replayed_probes_measure_what_full_passes_measure(name, monkeypatch):
    """The same sensitivities, whether the blocks after the perturbed one are replayed or the whole model runs
    (T5's decoder reads the encoder and a cache, and Swin downsamples between stages: those take full passes)."""
    torch.manual_seed(0)
    model = ARCHITECTURES[name]().eval()
    data = _images() if name.startswith("timm") else Tokens(n=16)
    layers, probe = _probes(model, data, stack)
    replayed = []
    monkeypatch.setattr(allocate, "replay", lambda *a: replayed.append(replay.replay(*a)) or replayed[-1])
    fast = allocate.sensitivities(model, layers, probe)
    if name in ("hf_bert", "timm_vit", "hf_gpt2"):  # one chain of blocks: replayed, not run whole
        assert replayed and any(r is not None for r in replayed)
    monkeypatch.setattr(allocate, "replay", lambda *a: None)  # every probe a full pass, as before replay existed
    full = allocate.sensitivities(model, layers, probe)
    assert [f is None for f in fast] == [f is None for f in full]
    assert [f for f in fast if f is not None] == pytest.approx([f for f in full if f is not None], rel=1e-4, abs=1e-9)


def test_a_chain_of_blocks_is_replayed_and_a_broken_one_is_not():
    torch.manual_seed(0)
    bert = ARCHITECTURES["hf_bert"]().eval()
    recorder = BlockCalls(bert, pela.arch.find_blocks(bert))
    calls, linked = recorder.record(lambda: bert(input_ids=torch.randint(0, 100, (2, 6))))
    assert [c.name for c in calls] == ["encoder.layer.0", "encoder.layer.1"] and linked == [False, True]
    outputs = replay.replay(calls, linked, 0)
    assert all(torch.allclose(outputs[i], calls[i].output, atol=1e-6) for i in range(2))
    assert replay.replay(calls, [False, False], 0) is None  # the second block does not read the first: no replay
    recorder.remove()
