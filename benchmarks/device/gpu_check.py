"""CUDA smoke check: the properties the CPU test suite proves, re-checked where the GPU changes them.

    python3 benchmarks/device/gpu_check.py [cuda]     (exits 1 and names the failed check; cpu tries it out)

LowRankLinear on the GPU (device, dtype, autocast, torch.compile), compress on the GPU keeps every
factor there and stays near the Eckart–Young optimum, save → load reproduces GPU outputs bitwise,
and a whitened, budgeted compression of a BERT runs with its calibration on the GPU.
"""

import sys
import tempfile

import torch
from torch import nn
from transformers import BertConfig, BertModel

import pela
from pela import LowRankConfig, LowRankLinear

checks: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    checks.append((name, bool(ok), detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)


dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
torch.manual_seed(0)
print(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch", torch.__version__)

linear = nn.Linear(768, 3072).to(dev)
low = LowRankLinear.from_linear(linear, 256)
x = torch.randn(64, 197, 768, device=dev)
check("factors on the device", all(p.device.type == dev.type for p in low.parameters()))
with torch.autocast(dev.type, torch.bfloat16):
    check("autocast dtype matches nn.Linear", low(x).dtype == linear(x).dtype == torch.bfloat16, str(low(x).dtype))
with torch.no_grad():
    eager, compiled = low(x), torch.compile(low)(x)
check("torch.compile matches eager", torch.allclose(eager, compiled, atol=1e-4, rtol=1e-4),
      f"max diff {float((eager - compiled).abs().max()):.2e}")


def bert() -> nn.Module:
    cfg = BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    return BertModel(cfg).eval().to(dev)


model = bert()
originals = {n: m.weight.detach().double() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
report = pela.compress(model, LowRankConfig(ratio=2))
check("compress keeps factors on the device", all(p.device.type == dev.type for p in model.parameters()))
worst = 0.0
for r in report.factorized:
    s = torch.linalg.svdvals(originals[r.name])
    optimum = float(torch.sqrt((s[r.rank:] ** 2).sum() / (s**2).sum()))
    worst = max(worst, r.rel_error - optimum)
check("relative error within 1e-4 of Eckart-Young", worst < 1e-4, f"worst excess {worst:.2e}")
ids = torch.randint(0, 1000, (8, 32), device=dev)
with torch.no_grad():
    before = model(input_ids=ids).last_hidden_state
with tempfile.TemporaryDirectory() as tmp:
    pela.save_pretrained(model, f"{tmp}/m")
    again = pela.load(f"{tmp}/m").to(dev).eval()
    with torch.no_grad():
        after = again(input_ids=ids).last_hidden_state
check("save/load bitwise on the device", torch.equal(before, after))

model = bert()
texts = [{"input_ids": torch.randint(0, 1000, (48,)), "attention_mask": torch.ones(48, dtype=torch.long)} for _ in range(64)]


def collate(batch: list[dict]) -> dict:
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


calibration = pela.calibrate(model, texts, LowRankConfig(init="whiten"), collate_fn=collate, samples=64)
check("calibration statistics computed", len(calibration.moments) > 0, f"{len(calibration.moments)} layers")
rep = pela.compress(model, LowRankConfig(init="whiten", param_budget=0.5), calibration=calibration)
kept = rep.params_after / rep.params_before
check("whiten + budget on the device", all(p.device.type == dev.type for p in model.parameters()) and kept < 1, f"params kept {kept:.3f}")

failed = [n for n, ok, _ in checks if not ok]
print(f"{len(checks) - len(failed)}/{len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
sys.exit(1 if failed else 0)
