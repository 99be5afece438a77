"""Memory arithmetic for distilling a large language model under FSDP: what one GPU holds.

Not a measurement (it needs a multi-GPU machine): the sizes come from the architecture, built on the
meta device (no weights, no memory), and from pela's own rank rule (`LowRankConfig(ratio=k)`), so the
student's parameter count is exactly the one `pela compress` would give. Per GPU, with N GPUs:

    teacher       frozen, bf16, sharded              2 B · P_teacher / N
    student       fp32 weights + fp32 gradients + AdamW's two moments, sharded   16 B · P_student / N
                  (offloaded to the CPU with fsdp_offload_params: 0 on the GPU, the same in host memory)
    gathered      one block of each model whole in bf16, two at a time (prefetch)  2 · 2 B · (block_t + block_s)
    activations   per token of the micro-batch, with activation checkpointing: each student block's input and
                  each teacher block's output kept for the feature loss (bf16), one block recomputed in the
                  backward pass (≈ 2 B · (6·h + 4·i)), and the two models' logits for the KL term in fp32
                  with their softmaxes and gradient (≈ 4 · 4 B · vocabulary)

    .venv/bin/python -m benchmarks.fsdp_memory [--gpus 8] [--gpu-gib 80] [--ratio 2] [--tokens 4096] [--json FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks._results import save

# Llama-2's published dimensions (config.json on the Hub); any LlamaConfig-shaped model gives its own
MODELS = {
    "7B": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32000},
    "70B": {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
            "num_key_value_heads": 8, "vocab_size": 32000},
}
GIB = 2**30


def sizes(dims: dict, ratio: float) -> dict:
    """Parameter counts of the teacher and of its pela student at ``ratio``, whole and per block."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from pela import LowRankConfig
    from pela.compression.ranks import choose_rank
    from pela.compression.targets import select

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**dims, tie_word_embeddings=False))
    teacher = sum(p.numel() for p in model.parameters())
    saved = 0
    for c in select(model, LowRankConfig(ratio=ratio)):
        if c.skip_reason is None:
            n_out, n_in = c.weight.shape
            rank, why = choose_rank(n_out, n_in, torch.ones(1), LowRankConfig(ratio=ratio))
            if why is None:
                saved += n_out * n_in - rank * (n_out + n_in)
    layers = dims["num_hidden_layers"]
    block_t = sum(p.numel() for p in model.model.layers[0].parameters())
    return {"teacher": teacher, "student": teacher - saved, "block_teacher": block_t, "block_student": block_t - saved // layers}


def per_gpu(dims: dict, size: dict, gpus: int, tokens: int, offload: bool) -> dict:
    h, i, v, layers = dims["hidden_size"], dims["intermediate_size"], dims["vocab_size"], dims["num_hidden_layers"]
    per_token = 2 * layers * h * 2 + 2 * (6 * h + 4 * i) + 4 * 4 * v
    parts = {"teacher": 2 * size["teacher"] / gpus, "student": 0.0 if offload else 16 * size["student"] / gpus,
             "gathered": 2 * 2 * (size["block_teacher"] + size["block_student"]), "activations": per_token * tokens}
    return {k: v / GIB for k, v in parts.items()} | {"total": sum(parts.values()) / GIB,
                                                     "host_per_gpu": (16 * size["student"] / gpus if offload else 0.0) / GIB}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU, GiB")
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--tokens", type=int, default=4096, help="tokens in one process's micro-batch (e.g. 2 × 2048)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    rows = []
    for name, dims in MODELS.items():
        size = sizes(dims, args.ratio)
        for offload in (False, True):
            mem = per_gpu(dims, size, args.gpus, args.tokens, offload)
            rows.append({"model": name, "offload": offload, "teacher_params": size["teacher"], "student_params": size["student"], **mem})
    print(f"per GPU, {args.gpus} GPUs of {args.gpu_gib:g} GiB, k={args.ratio:g}, {args.tokens} tokens per micro-batch (GiB)\n")
    print("| model | parameters teacher → student | student states | teacher | gathered blocks | activations | total | fits | host memory per GPU |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        where = "CPU (offloaded)" if r["offload"] else f"{r['student']:.1f}"
        print(f"| {r['model']} | {r['teacher_params'] / 1e9:.2f}B → {r['student_params'] / 1e9:.2f}B | {where} | {r['teacher']:.1f} | "
              f"{r['gathered']:.1f} | {r['activations']:.1f} | {r['total']:.1f} | {'yes' if r['total'] < args.gpu_gib else 'no'} | "
              f"{r['host_per_gpu']:.1f} |")
    if args.json:
        save(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
