"""Every stage of the command line on tiny random-init builds of many Transformer architectures.

    .venv/bin/python -m benchmarks.architectures                 # all of them, about 6 minutes on 2 cores
    .venv/bin/python -m benchmarks.architectures --only bert timm_vit

For each model: save it the way users get it (a Hugging Face directory with a tokenizer or image
processor; timm's hub format for timm models), then run, in one process, `pela compress` (k=2), `pela
compress --calib --param-budget 0.5` (whitened SVD, ranks allocated across layers), `pela bench
--vs` the dense model (its peak memory measured too), `pela distill` (2 steps, scored on held-out data, the best
kept), `pela compare`, `pela finetune` (1 epoch on labelled text or images, evaluated every 2 steps, the best
kept), `pela eval`, `pela bench` of the fine-tuned model, `pela finetune --lora` (the best kept) and, for
transformers models, `pela export` (loaded back with transformers alone, outputs equal to pela's), stopping at the first step that fails. The test suite covers seven families; this covers the ones users bring (decoder LMs,
encoder-decoders, two-tower models, hierarchical vision models). Nothing here is downloaded: the
tokenizer is the offline MiniLM's. Results: benchmarks/results/architectures.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers as T  # noqa: E402
from PIL import Image  # noqa: E402

import pela  # noqa: E402
from benchmarks._results import report  # noqa: E402
from benchmarks.harness import minilm_dir
from pela.cli.app import main as cli

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=3)
SEQ2SEQ = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
               encoder_ffn_dim=64, decoder_ffn_dim=64)
T5 = dict(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)


def hf_models(vocab: int) -> dict[str, tuple[Callable[[], torch.nn.Module], str]]:
    """name -> (build, data kind); data kind is text, image or pair (image-caption)."""
    towers = dict(text_config=dict(vocab_size=vocab, max_position_embeddings=64, **TINY),
                  vision_config=dict(image_size=32, patch_size=8, **TINY))
    specs = {
        "bert": (T.BertModel, T.BertConfig(vocab_size=vocab, **TINY), "text"),
        "bert_mlm": (T.BertForMaskedLM, T.BertConfig(vocab_size=vocab, **TINY), "text"),
        "roberta_cls": (T.RobertaForSequenceClassification, T.RobertaConfig(vocab_size=vocab, num_labels=3, **TINY), "text"),
        "distilbert": (T.DistilBertModel, T.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64), "text"),
        "albert": (T.AlbertModel, T.AlbertConfig(vocab_size=vocab, embedding_size=16, **TINY), "text"),
        "deberta_v2": (T.DebertaV2Model, T.DebertaV2Config(vocab_size=vocab, **TINY), "text"),
        "electra": (T.ElectraModel, T.ElectraConfig(vocab_size=vocab, embedding_size=16, **TINY), "text"),
        "mpnet": (T.MPNetModel, T.MPNetConfig(vocab_size=vocab, **TINY), "text"),
        "modernbert": (T.ModernBertModel, T.ModernBertConfig(vocab_size=vocab, pad_token_id=0, **TINY), "text"),
        "xlnet": (T.XLNetModel, T.XLNetConfig(vocab_size=vocab, d_model=32, n_layer=2, n_head=2, d_inner=64), "text"),
        "gpt2_lm": (T.GPT2LMHeadModel, T.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64), "text"),
        "gpt_neox": (T.GPTNeoXModel, T.GPTNeoXConfig(vocab_size=vocab, **TINY), "text"),
        "opt": (T.OPTModel, T.OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                                        word_embed_proj_dim=32), "text"),
        "bloom": (T.BloomModel, T.BloomConfig(vocab_size=vocab, hidden_size=32, n_layer=2, n_head=2), "text"),
        "phi": (T.PhiModel, T.PhiConfig(vocab_size=vocab, **TINY), "text"),
        "llama_lm": (T.LlamaForCausalLM, T.LlamaConfig(vocab_size=vocab, num_key_value_heads=1, **TINY), "text"),
        "mistral": (T.MistralModel, T.MistralConfig(vocab_size=vocab, num_key_value_heads=1, **TINY), "text"),
        "qwen2_lm": (T.Qwen2ForCausalLM, T.Qwen2Config(vocab_size=vocab, num_key_value_heads=1, **TINY), "text"),
        "gemma_lm": (T.GemmaForCausalLM, T.GemmaConfig(vocab_size=vocab, num_key_value_heads=1, head_dim=16, **TINY), "text"),
        "t5_encoder": (T.T5EncoderModel, T.T5Config(vocab_size=vocab, **T5), "text"),
        "t5": (T.T5ForConditionalGeneration, T.T5Config(vocab_size=vocab, **T5), "text"),
        "mt5": (T.MT5ForConditionalGeneration, T.MT5Config(vocab_size=vocab, **T5), "text"),
        "bart": (T.BartModel, T.BartConfig(vocab_size=vocab, **SEQ2SEQ), "text"),
        "bart_generation": (T.BartForConditionalGeneration, T.BartConfig(vocab_size=vocab, **SEQ2SEQ), "text"),
        # added later: more encoders, decoders, seq2seq models and heads users bring
        "bert_cls": (T.BertForSequenceClassification, T.BertConfig(vocab_size=vocab, num_labels=2, **TINY), "text"),
        "distilbert_cls": (T.DistilBertForSequenceClassification, T.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2,
                                                                                     hidden_dim=64, num_labels=5), "text"),
        "xlm_roberta": (T.XLMRobertaModel, T.XLMRobertaConfig(vocab_size=vocab, **TINY), "text"),
        "funnel": (T.FunnelModel, T.FunnelConfig(vocab_size=vocab, d_model=32, n_head=2, d_head=16, d_inner=64, block_sizes=[1, 1]), "text"),
        "bigbird": (T.BigBirdModel, T.BigBirdConfig(vocab_size=vocab, attention_type="original_full", **TINY), "text"),
        "roformer": (T.RoFormerModel, T.RoFormerConfig(vocab_size=vocab, **TINY), "text"),
        "mobilebert": (T.MobileBertModel, T.MobileBertConfig(vocab_size=vocab, embedding_size=16, intra_bottleneck_size=16,
                                                             true_hidden_size=16, **TINY), "text"),
        "falcon": (T.FalconModel, T.FalconConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2), "text"),
        "gptj": (T.GPTJModel, T.GPTJConfig(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, rotary_dim=8, n_positions=64), "text"),
        "phi3": (T.Phi3Model, T.Phi3Config(vocab_size=vocab, num_key_value_heads=1, pad_token_id=0, **TINY), "text"),
        "qwen3_lm": (T.Qwen3ForCausalLM, T.Qwen3Config(vocab_size=vocab, num_key_value_heads=1, head_dim=16, **TINY), "text"),
        "gemma2": (T.Gemma2Model, T.Gemma2Config(vocab_size=vocab, num_key_value_heads=1, head_dim=16, **TINY), "text"),
        "olmo": (T.OlmoModel, T.OlmoConfig(vocab_size=vocab, pad_token_id=0, **TINY), "text"),
        "stablelm": (T.StableLmModel, T.StableLmConfig(vocab_size=vocab, num_key_value_heads=2, **TINY), "text"),
        "llama_cls": (T.LlamaForSequenceClassification, T.LlamaConfig(vocab_size=vocab, num_key_value_heads=1, num_labels=2,
                                                                      pad_token_id=0, **TINY), "text"),
        "pegasus": (T.PegasusModel, T.PegasusConfig(vocab_size=vocab, **SEQ2SEQ), "text"),
        "marian_mt": (T.MarianMTModel, T.MarianConfig(vocab_size=vocab, decoder_start_token_id=0, pad_token_id=0, **SEQ2SEQ), "text"),
        "mbart_generation": (T.MBartForConditionalGeneration, T.MBartConfig(vocab_size=vocab, **SEQ2SEQ), "text"),
        "clip_text": (T.CLIPTextModel, T.CLIPTextConfig(vocab_size=vocab, max_position_embeddings=64, **TINY), "text"),
        "hf_vit_cls": (T.ViTForImageClassification, T.ViTConfig(image_size=32, patch_size=8, num_labels=3, **TINY), "image"),
        "hf_deit": (T.DeiTModel, T.DeiTConfig(image_size=32, patch_size=8, **TINY), "image"),
        "hf_beit": (T.BeitModel, T.BeitConfig(image_size=32, patch_size=8, **TINY), "image"),
        "hf_dinov2": (T.Dinov2Model, T.Dinov2Config(image_size=32, patch_size=8, **TINY), "image"),
        "hf_swin": (T.SwinModel, T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4), "image"),
        "hf_swinv2": (T.Swinv2Model, T.Swinv2Config(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4), "image"),
        "hf_vitmae": (T.ViTMAEModel, T.ViTMAEConfig(image_size=32, patch_size=8, mask_ratio=0.0, **TINY), "image"),
        "hf_vitmsn": (T.ViTMSNModel, T.ViTMSNConfig(image_size=32, patch_size=8, **TINY), "image"),
        "hf_data2vec_vision": (T.Data2VecVisionModel, T.Data2VecVisionConfig(image_size=32, patch_size=8, **TINY), "image"),
        "hf_dinov2_registers": (T.Dinov2WithRegistersModel, T.Dinov2WithRegistersConfig(image_size=32, patch_size=8, **TINY), "image"),
        "hf_beit_cls": (T.BeitForImageClassification, T.BeitConfig(image_size=32, patch_size=8, num_labels=3, **TINY), "image"),
        "hf_swin_cls": (T.SwinForImageClassification, T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                                                 window_size=4, num_labels=3), "image"),
        "hf_deit_with_teacher": (T.DeiTForImageClassificationWithTeacher, T.DeiTConfig(image_size=32, patch_size=8, num_labels=3, **TINY),
                                 "image"),
        # hierarchical: a width per stage (hidden_sizes) and a B×C×H×W feature map as the last hidden states
        "hf_pvt_v2": (T.PvtV2Model, T.PvtV2Config(image_size=32, hidden_sizes=[16, 32, 32, 32], depths=[1, 1, 1, 1],
                                                  num_attention_heads=[1, 1, 2, 2]), "image"),
        "hf_segformer": (T.SegformerModel, T.SegformerConfig(image_size=32, hidden_sizes=[16, 32, 32, 32], depths=[1, 1, 1, 1],
                                                              num_attention_heads=[1, 1, 2, 2]), "image"),
        "clip_vision": (T.CLIPVisionModel, T.CLIPVisionConfig(image_size=32, patch_size=8, **TINY), "image"),
        "siglip_vision": (T.SiglipVisionModel, T.SiglipVisionConfig(image_size=32, patch_size=8, **TINY), "image"),
        "clip": (T.CLIPModel, T.CLIPConfig(projection_dim=16, **towers), "pair"),
        "siglip": (T.SiglipModel, T.SiglipConfig(**towers), "pair"),
        "owlvit": (T.OwlViTModel, T.OwlViTConfig(projection_dim=16, **towers), "pair"),
        "altclip": (T.AltCLIPModel, T.AltCLIPConfig(projection_dim=16, text_config=dict(towers["text_config"], project_dim=16),
                                                    vision_config=towers["vision_config"]), "pair"),
        "clip_on_images": (T.CLIPModel, T.CLIPConfig(projection_dim=16, **towers), "image"),  # its vision tower alone
        "siglip_on_text": (T.SiglipModel, T.SiglipConfig(**towers), "text"),  # its text tower alone
    }
    return {name: ((lambda cls=cls, cfg=cfg: cls(cfg)), kind) for name, (cls, cfg, kind) in specs.items()}


TIMM = {  # name -> (timm architecture, its arguments)
    "timm_vit": ("vit_tiny_patch16_224", VIT),
    "timm_vit_gap": ("vit_tiny_patch16_224", dict(VIT, class_token=False, global_pool="avg")),
    "timm_vit_clip": ("vit_base_patch16_clip_224", VIT),
    "timm_vit_registers": ("vit_small_patch14_reg4_dinov2", dict(VIT, img_size=28, patch_size=14)),
    "timm_deit_distilled": ("deit_tiny_distilled_patch16_224", VIT),
    "timm_deit3": ("deit3_small_patch16_224", VIT),
    "timm_beit": ("beit_base_patch16_224", VIT),
    "timm_eva02": ("eva02_tiny_patch14_224", dict(VIT, img_size=28, patch_size=14)),
    "timm_cait": ("cait_xxs24_224", VIT),
    "timm_xcit": ("xcit_nano_12_p16_224", dict(img_size=32, embed_dim=32, depth=2, num_heads=2, num_classes=3)),
    "timm_swin": ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, img_size=32,
                                                       num_classes=3)),
    "timm_mixer": ("mixer_s16_224", dict(img_size=32, num_classes=3)),
    "timm_levit": ("levit_128s", dict(num_classes=3)),
    "timm_pvt_v2": ("pvt_v2_b0", dict(num_classes=3)),
    "timm_twins": ("twins_svt_small", dict(num_classes=3)),
    "timm_pit": ("pit_ti_224", dict(img_size=64, num_classes=3)),
    "timm_tnt": ("tnt_s_patch16_224", dict(img_size=32, depth=2, num_classes=3)),
    "timm_crossvit": ("crossvit_tiny_240", dict(num_classes=3)),
    "timm_maxvit": ("maxvit_nano_rw_256", dict(img_size=64, num_classes=3)),
    "timm_hiera": ("hiera_tiny_224", dict(img_size=64, num_classes=3)),
}


def write_data(root: Path, seed: int = 0) -> dict[str, Path]:
    """Unlabelled text, labelled text (CSV), a labelled image folder, one of train/val splits, and image-caption pairs."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(1, 3))) for _ in range(300)]
    sentence = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    (root / "text.txt").write_text("".join(sentence(rng.randint(3, 20)) + "\n" for _ in range(16)))
    (root / "labelled.csv").write_text("text,label\n" + "".join(f"{sentence(5)},{'ab'[i % 2]}\n" for i in range(16)))
    image = lambda: Image.fromarray((torch.rand(40, 40, 3, generator=torch.Generator().manual_seed(rng.randrange(10**6))) * 255)  # noqa: E731
                                    .byte().numpy())
    for folder in ("images", "splits/train", "splits/val"):
        for label in ("cat", "dog"):
            (root / folder / label).mkdir(parents=True)
            for i in range(4 if folder != "splits/val" else 2):
                image().save(root / folder / label / f"{i}.png")
    (root / "pairs").mkdir()
    with open(root / "pairs" / "captions.jsonl", "w") as f:
        for i in range(8):
            image().save(root / "pairs" / f"{i}.png")
            f.write(json.dumps({"image": f"{i}.png", "text": sentence(6)}) + "\n")
    return {"text": root / "text.txt", "labelled_text": root / "labelled.csv", "images": root / "images", "splits": root / "splits",
            "pairs": root / "pairs" / "captions.jsonl"}


def run_cli(*args) -> tuple[object, str, str]:
    """Exit code, the last line of stderr (a traceback's last line for an exception), and stdout."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = cli([str(a) for a in args])
        except SystemExit as e:
            code = e.code
        except Exception:
            code = "exception"
            err.write(traceback.format_exc())
    lines = err.getvalue().strip().splitlines()
    return code, (lines[-1] if lines else ""), out.getvalue()


def check_export(student: Path, exported: Path) -> tuple[object, str]:
    """Load the exported directory with transformers (its first auto class) and compare its outputs with
    pela.load's on the same inputs: they must be equal, bit for bit."""
    from pela.arch.inputs import example_inputs
    from pela.arch.outputs import forward, main_output

    try:
        auto = next(iter(json.loads((exported / "config.json").read_text())["auto_map"]))
        theirs = getattr(T, auto).from_pretrained(exported, trust_remote_code=True)
        ours = pela.load(student)
        inputs = example_inputs(ours, batch_size=2, seq_len=8)
        outputs = []
        for m in (theirs, ours):
            torch.manual_seed(0)  # the same random masking, for models that draw some (ViT-MAE)
            with torch.no_grad():
                outputs.append(main_output(forward(m, inputs)))
        a, b = outputs
    except Exception as e:  # noqa: BLE001 - the message is the result
        return "exception", f"{type(e).__name__}: {e}".splitlines()[0]
    return (0, "") if torch.equal(a, b) else ("outputs differ", f"max difference {float((a - b).abs().max()):.3g}")


def check(name: str, build: Callable[[], torch.nn.Module], kind: str, work: Path, data: dict[str, Path], tokenizer) -> dict:
    dense, d = work / name / "dense", work / name
    d.mkdir()
    torch.manual_seed(0)
    model = build().eval()
    if name.startswith("timm_"):  # as timm shares models on the hub: config.json + model.safetensors
        __import__("timm").models.save_for_hf(model, str(dense), safe_serialization=True)
    else:
        model.save_pretrained(dense)
        if kind in ("text", "pair"):
            tokenizer.save_pretrained(dense)
        if kind in ("image", "pair"):
            T.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(dense)
    unlabelled = {"text": data["text"], "image": data["images"], "pair": data["pairs"]}[kind]
    labelled = data["labelled_text"] if kind == "text" else data["splits"]  # train/ for --data, val/ for --eval-data
    steps = {
        "compress": ["compress", dense, "--out", d / "k2", "--ratio", 2, "--config", "align=1"],
        "compress_calib": ["compress", dense, "--out", d / "budget", "--calib", unlabelled, "--config", "calib_samples=16",
                           "--param-budget", 0.5, "--config", "align=1"],
        "bench": ["bench", d / "k2", "--vs", dense, "--batch-size", 2, "--config", "iters=1", "--config", "rounds=1", "--seq-len", 16,
                  "--json"],
        "distill": ["distill", "--student", d / "k2", "--teacher", dense, "--data", unlabelled, "--out", d / "distilled",
                    "--steps", 2, "--batch-size", 4, "--eval-data", unlabelled, "--config", "eval_samples=8", "--keep-best", "mean_mse"],
        "compare": ["compare", d / "distilled", dense, "--data", unlabelled],
        "finetune": ["finetune", d / "distilled", "--data", labelled, "--eval-data", labelled, "--out", d / "tuned",
                     "--epochs", 1, "--batch-size", 4, "--config", "eval_every=2", "--keep-best", "loss"],
        "eval": ["eval", d / "tuned", "--data", labelled],
        "bench_tuned": ["bench", d / "tuned", "--batch-size", 2, "--config", "iters=1", "--config", "rounds=1", "--seq-len", 16, "--json"],
        "lora": ["finetune", d / "distilled", "--data", labelled, "--out", d / "lora", "--epochs", 1, "--batch-size", 4, "--lora", 4,
                 "--eval-data", labelled, "--keep-best", "accuracy"],
    }
    if not name.startswith("timm_"):  # a transformers model: exported, it must load with transformers alone
        steps["export"] = ["export", d / "k2", "--out", d / "hf"]
    result: dict = {"data": kind, "passed": [], "failed": None}
    start = time.perf_counter()
    for step, args in steps.items():
        code, last, out = run_cli(*args)
        if code == 0 and step.startswith("bench") and any(r["peak_memory_bytes"] is None for r in json.loads(out)["results"]):
            code = "peak memory not measured"  # the warning saying why is the last line of stderr
        if code == 0 and step == "export":
            code, last = check_export(d / "k2", d / "hf")
        if code != 0:
            result["failed"] = {"step": step, "exit_code": code, "message": last}
            break
        result["passed"].append(step)
    if "compress" in result["passed"]:
        result["params_dense"] = pela.compression.compress.count_params(pela.load(str(dense)))
        result["params_k2"] = pela.compression.compress.count_params(pela.load(d / "k2"))
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="check only these (see --list)")
    p.add_argument("--list", action="store_true", help="print the names and exit")
    p.add_argument("--name", default="architectures", help="result name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    tokenizer = T.AutoTokenizer.from_pretrained(minilm_dir())
    models = hf_models(tokenizer.vocab_size)
    models |= {name: ((lambda arch=arch, kw=kw: pela.load(f"timm:{arch}", random_init=True, **kw)), "image")
               for name, (arch, kw) in TIMM.items()}
    if args.list:
        print("\n".join(models))
        return
    unknown = sorted(set(args.only or ()) - set(models))
    if unknown:
        p.error(f"unknown names {unknown}; --list shows them")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    results = {}
    work = Path(tempfile.mkdtemp(prefix="pela-architectures-"))
    try:
        data = write_data(work)
        for name, (build, kind) in models.items():
            if args.only and name not in args.only:
                continue
            results[name] = check(name, build, kind, work, data, tokenizer)
            r = results[name]
            status = f"all {len(r['passed'])} steps" if r["failed"] is None else f"{r['failed']['step']} failed: {r['failed']['message']}"
            print(f"{name:22s} {status}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    passed = sum(r["failed"] is None for r in results.values())
    report(args.name, {"command": "benchmarks/architectures.py" + (" --only " + " ".join(args.only) if args.only else ""),
                       "pela": pela.__version__, "transformers": T.__version__, "timm": __import__("timm").__version__,
                       "passed": passed, "checked": len(results), "models": results})


if __name__ == "__main__":
    main()
