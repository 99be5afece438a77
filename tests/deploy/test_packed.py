"""Packed execution: layers that read the same input share one product of their first factors."""

import copy
import json

import pytest
import torch
from conftest import hf_bert, tiny_llama

import pela
from pela.deploy.packed import find_shared_inputs, pack
from pela.layers.lowrank import densify, owned_state_dict, shared_input_groups


def _student():
    model = tiny_llama()
    pela.compress(model, pela.LowRankConfig(ratio=2, align=1))
    return model


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))


def test_q_k_v_and_gate_up_are_found_and_packed_without_changing_the_outputs():
    model = _student()
    before = _logits(model, IDS)
    groups = pack(model)
    attention = [f"model.layers.{i}.self_attn.{p}_proj" for p in "qkv" for i in (0,)]
    assert attention in groups and ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"] in groups
    assert len(groups) == 4 and shared_input_groups(model) == groups
    q, k = model.get_submodule(groups[0][0]), model.get_submodule(groups[0][1])
    assert q.a.weight.untyped_storage().data_ptr() == k.a.weight.untyped_storage().data_ptr()
    torch.testing.assert_close(_logits(model, IDS), before, rtol=1e-5, atol=1e-6)
    assert model.get_submodule(groups[0][0]).shared._input is None  # the last reader let it go


def test_a_packed_model_runs_in_inference_mode_with_the_same_outputs():
    """Inference tensors keep no version counter: the stack's product is shared by object."""
    model = _student()
    before = _logits(model, IDS)
    pack(model)
    stack = model.get_submodule("model.layers.0.self_attn.q_proj").shared
    calls = []
    real = torch.nn.functional.linear
    try:
        torch.nn.functional.linear = lambda x, w, b=None: (calls.append(w is stack.weight),
                                                           real(x, w, b))[1]
        with torch.inference_mode():
            after = model(input_ids=IDS).logits
    finally:
        torch.nn.functional.linear = real
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert calls.count(True) == 1  # one product of the stack for q, k and v


def test_an_unfactorized_model_has_nothing_to_pack():
    assert find_shared_inputs(tiny_llama()) == [] and pack(hf_bert()) == []


def test_training_goes_around_the_stack_and_the_stack_sees_every_update():
    model, plain = _student(), _student()
    pack(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(input_ids=IDS, labels=IDS).loss
    loss.backward()
    q = model.get_submodule("model.layers.0.self_attn.q_proj")
    assert q.a.weight.grad is not None and q.a.weight.grad.abs().sum() > 0
    opt.step()
    plain.load_state_dict(owned_state_dict(model))  # the same weights, not packed
    torch.testing.assert_close(_logits(model, IDS), _logits(plain, IDS), rtol=1e-5, atol=1e-6)


def test_a_hook_or_an_adapter_on_a_factor_is_not_bypassed():
    model = _student()
    pack(model)
    seen = []
    k = model.get_submodule("model.layers.0.self_attn.k_proj")
    k.a.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    _logits(model, IDS)
    assert seen == [torch.Size([2, 9, k.rank])]  # .a ran itself, so its hook saw it


def test_moving_to_another_dtype_stacks_again():
    model = _student()
    pack(model)
    plain = copy.deepcopy(model)
    densify(plain)
    model.to(torch.float64)
    q = model.get_submodule("model.layers.0.self_attn.q_proj")
    assert q.shared.intact() and q.shared.weight.dtype == torch.float64
    torch.testing.assert_close(_logits(model, IDS.clone()).float(), _logits(plain.double(), IDS).float(),
                               rtol=1e-4, atol=1e-5)


def test_packing_survives_save_load_and_export(tmp_path):
    from transformers import AutoModelForCausalLM

    model = _student()
    groups = pack(model)
    before = _logits(model, IDS)
    pela.save_pretrained(model, tmp_path / "packed")
    meta = json.loads((tmp_path / "packed" / "pela.json").read_text())
    assert meta["shared_inputs"] == groups
    loaded = pela.load(str(tmp_path / "packed"))
    assert shared_input_groups(loaded) == groups
    torch.testing.assert_close(_logits(loaded, IDS), before, rtol=1e-5, atol=1e-6)
    from pela.models.export import export_hf

    export_hf(tmp_path / "packed", tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    # transformers' copy of modeling_pela.py: its own LowRankLinear class
    stacks = {id(m.shared): m.shared for m in hf.modules() if getattr(m, "shared", None) is not None}
    assert [g.names(hf) for g in stacks.values()] == groups
    torch.testing.assert_close(_logits(hf, IDS), before, rtol=1e-5, atol=1e-6)


def test_a_bad_group_in_pela_json_is_one_clear_error(tmp_path):
    model = _student()
    pack(model)
    pela.save_pretrained(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "pela.json").read_text())
    meta["shared_inputs"] = [["model.layers.0.self_attn.q_proj", "lm_head"]]
    (tmp_path / "m" / "pela.json").write_text(json.dumps(meta))
    with pytest.raises(pela.PelaError, match="not a group of factorized layers"):
        pela.load(str(tmp_path / "m"))


def _products(model) -> tuple[int, int]:
    """How many linear products one traced forward pass holds, and its graph breaks."""
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(input_ids=IDS)
    linear = torch.nn.functional.linear
    nodes = [n for g in explained.graphs for n in g.graph.nodes]
    products = sum(n.op == "call_function" and n.target is linear for n in nodes)
    return products, explained.graph_break_count


@pytest.mark.slow  # torch.compile: seconds
def test_a_packed_model_compiles_to_the_same_outputs_in_one_graph_with_fewer_products():
    model = _student()
    before = _logits(model, IDS)
    unpacked, _ = _products(model)
    groups = pack(model)
    packed, breaks = _products(model)
    # one product of A per group where each layer had its own
    assert breaks == 0 and packed == unpacked - sum(len(g) - 1 for g in groups)
    torch.testing.assert_close(_logits(torch.compile(model), IDS), before, rtol=1e-5, atol=1e-6)
