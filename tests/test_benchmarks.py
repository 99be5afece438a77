"""The benchmark scripts still run: each one at toy size, its results sent to a temporary folder."""

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

pytestmark = pytest.mark.slow  # each runs a benchmark script end to end

ROOT = Path(__file__).resolve().parents[1]


def as_module(script: str) -> list[str]:
    """``benchmarks/NAME.py`` as it is run: ``-m benchmarks.NAME`` from the repository's root."""
    return ["-m", "benchmarks." + Path(script).stem]


def run_script(tmp_path: Path, script: str, *args: str) -> SimpleNamespace:
    """``python -m benchmarks.NAME ARGS`` from the repository's root, in this process (a new interpreter
    would import torch again: seconds a script), its results sent to ``tmp_path``; its standard output."""
    out, cwd, argv = io.StringIO(), os.getcwd(), sys.argv
    sys.argv = [script, *args]
    os.chdir(ROOT)
    try:
        with mock.patch.dict(os.environ, {"PELA_BENCH_RESULTS": str(tmp_path)}), contextlib.redirect_stdout(out):
            runpy.run_module("benchmarks." + Path(script).stem, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        sys.argv = argv
        os.chdir(cwd)
    return SimpleNamespace(stdout=out.getvalue())


def words_file(path: Path) -> None:
    """24 lines of 3 to 7 words from the test tokenizer's vocabulary (`hf_bert_dir`'s w0 … w94)."""
    path.write_text("\n".join(" ".join(f"w{(i * 7 + j) % 95}" for j in range(3 + i % 5)) for i in range(24)) + "\n")


@pytest.fixture
def small_vit(tmp_path: Path) -> Path:
    """A random-init timm ViT-Tiny compressed at k=2 and saved: the compressed side of a speed comparison."""
    import timm

    import pela

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    pela.compress(model, pela.LowRankConfig(ratio=2))
    pela.save_pretrained(model, tmp_path / "small")
    return tmp_path / "small"


def test_factorize_speed(tmp_path):
    run_script(tmp_path, "benchmarks/factorize_speed.py", "--model", "vit_tiny_patch16_224")
    result = json.loads((tmp_path / "factorize_speed.json").read_text())
    assert result["layers"] == 48 and result["pela_seconds"] > 0 and result["released_seconds"] > 0
    assert result["worst_error_above_optimum"] < 1e-4


def test_distill_throughput(tmp_path):
    run_script(tmp_path, "benchmarks/distill_throughput.py", "--model", "vit_tiny_patch16_224", "--batch-size", "2",
               "--steps", "1", "--rounds", "1")
    result = json.loads((tmp_path / "distill_throughput_cpu.json").read_text())
    assert result["pela_items_per_s"] > 0 and result["released_items_per_s"] > 0


def test_profile_lowrank(tmp_path, small_vit):
    proc = run_script(tmp_path, "benchmarks/profile_lowrank.py", str(small_vit), "--vs", "timm:vit_tiny_patch16_224",
                      "--batch-size", "2")
    result = json.loads(proc.stdout)
    assert result["dense"]["gemm_seconds"] > 0 and result["ratio_gemm"] > 0 and result["ratio_wall"] > 0


def test_profile_lowrank_sorts_gpu_kernels():
    from benchmarks.profile_lowrank import kind
    assert kind("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "gemm"
    assert kind("nvjet_tst_128x192_64x5_2x1_v_bz_coopA_TNN") == "gemm"
    assert kind("triton_tem_fused_addmm_0") == "gemm"
    assert kind("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>") == "attention"
    assert kind("fmha_cutlassF_bf16_aligned_64x128_rf_sm80") == "attention"
    assert kind("triton_poi_fused_add_native_layer_norm_3") == "other"
    assert kind("triton_red_fused_gelu_1") == "other"


def test_cpu_speed_runs(tmp_path, small_vit):
    run_script(tmp_path, "benchmarks/cpu_speed_runs.py", str(small_vit), "--vs", "timm:vit_tiny_patch16_224",
               "--runs", "1", "--batch-size", "1", "--iters", "1", "--rounds", "1", "--settings", "glibc default")
    result = json.loads((tmp_path / "compressed_speed_cpu_runs.json").read_text())
    assert set(result["summary"]) == {"glibc default"}
    assert all(len(s["ratios"]) == 1 and s["median_ratio"] > 0 for s in result["summary"].values())
    assert result["settings"]["glibc default"] == {"keep_freed_memory": "0", "flags": []}
    with pytest.raises(SystemExit, match="unknown setting 'jit'"):  # the message is what the interpreter prints, exit 1
        run_script(tmp_path, "benchmarks/cpu_speed_runs.py", "m", "--vs", "v", "--settings", "kept,jit")


SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py")
                 if not p.name.startswith("_") and "__main__" in p.read_text())

# every script run as `python -m benchmarks.NAME --help`, one after another in one process: each
# must print its usage and exit 0 (one interpreter instead of one per script saves a minute)
HELP_ALL = """
import contextlib, io, json, runpy, sys
answers = {}
for name in sys.argv[1:]:
    out = io.StringIO()
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module("benchmarks." + name, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    answers[name] = [code, out.getvalue()]
print(json.dumps(answers))
"""


def test_every_script_parses_its_arguments(tmp_path):
    """The heavy ones (real MiniLM, minutes of work) at least import and answer --help."""
    env = {**os.environ, "PELA_BENCH_RESULTS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", HELP_ALL, *SCRIPTS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(answers) == SCRIPTS and len(SCRIPTS) > 20
    for name, (code, text) in answers.items():
        assert code == 0 and "usage" in text, (name, code, text[-500:])


def test_loader_workers(tmp_path, hf_bert_dir):
    words_file(tmp_path / "text.txt")
    run_script(tmp_path, "benchmarks/loader_workers.py", "--model", str(hf_bert_dir), "--data", str(tmp_path / "text.txt"),
               "--workers", "0,1", "--steps", "3", "--rounds", "1", "--batch-size", "4")
    result = json.loads((tmp_path / "loader_workers_cpu.json").read_text())
    assert set(result["steps_per_s"]) == {"0", "1"} and result["students_max_abs_difference"] == 0.0


def test_lowrank_gemm(tmp_path, small_vit):
    run_script(tmp_path, "benchmarks/lowrank_gemm.py", str(small_vit), "--batch-size", "1", "--reps", "1")
    result = json.loads((tmp_path / "lowrank_gemm_cpu.json").read_text())
    # ViT-Tiny: qkv, proj, fc1, fc2 shapes, each in all 12 blocks, 197 tokens per image
    assert sorted((s["in"], s["out"]) for s in result["shapes"]) == [(192, 192), (192, 576), (192, 768), (768, 192)]
    assert all(s["count"] == 12 and s["tokens"] == 197 for s in result["shapes"])
    assert result["flop_ratio"] > 1 and result["ratio"] > 0


def test_architectures(tmp_path):
    """The architecture check runs every CLI step on the models it is given (export for transformers models
    only), and counts a model as passed only then."""
    run_script(tmp_path, "benchmarks/architectures.py", "--only", "gpt2_lm")
    result = json.loads((tmp_path / "architectures.json").read_text())
    assert result["checked"] == 1 and result["passed"] == 1, result["models"]
    steps = ["compress", "compress_calib", "bench", "distill", "compare", "finetune", "eval", "bench_tuned", "lora"]
    assert result["models"]["gpt2_lm"]["passed"] == steps + ["export"]
    for r in result["models"].values():
        assert 0 < r["params_k2"] < r["params_dense"]


def test_rank_study(tmp_path):
    """The GPU rank study runs end to end at toy size on the CPU: sweep, pick, whole models, profile."""
    out = tmp_path / "rank_study.json"
    run_script(tmp_path, "benchmarks/rank_study.py", "--model", "timm:vit_tiny_patch16_224", "--device", "cpu",
               "--dtype", "float32", "--batch-size", "1", "--no-compile", "--reps", "1", "--aligns", "8", "--profile",
               "--out", str(out))
    result = json.loads(out.read_text())
    assert sorted((r["in"], r["out"]) for r in result["sweep"]) == [(192, 192), (192, 576), (192, 768), (768, 192)]
    names = [m["name"] for m in result["models"]]
    assert names == ["dense", "k2_align8", "picked"] and result["models"][0]["speedup"] == 1.0
    exact = sum(r["count"] * r["exact_rank"] * (r["in"] + r["out"]) for r in result["sweep"])
    picked = sum(r["count"] * result["picked_ranks"][f"{r['in']}x{r['out']}"] * (r["in"] + r["out"]) for r in result["sweep"])
    assert 0.98 * exact <= picked <= exact
    assert set(result["profile"]) == {"dense", "k2_align8"}


def test_rank_study_picks_the_fastest_ranks_at_k_size():
    from benchmarks.rank_study import pick
    # 100 -> 100 and 60 -> 140 layers: k=2 gives both rank 25, 5,000 parameters (200 per rank); 32 is slow, 16 fast
    row = lambda **kw: {"in": 100, "out": 100, "count": 1, "exact_rank": 25,  # noqa: E731
                        "pair_ms": {"16": 1.0, "32": 5.0, "25": 9.0, "48": 2.0}} | kw
    # 16 + 32 = 48 ranks = 9,600 parameters: the only pair of multiples of 16 within [0.9, 1.0] of 10,000
    assert sorted(pick([row(), row(**{"in": 60, "out": 140})], keep=0.9).values()) == [16, 32]
    # one shape seen at two token counts: one rank for both, their times summed (48 is fastest but too big)
    ranks = pick([row(), row(count=2, pair_ms={"16": 3.0, "32": 1.0, "48": 0.5})], keep=0.5)
    assert ranks == {(100, 100): 16}  # 16: 1 + 2·3 = 7 ms, 9,600 parameters; 32 would be 19,200 > 15,000
    with pytest.raises(SystemExit):
        pick([row()], keep=0.99)  # 25 is not a multiple of 16, and 16 or 32 misses the window


def test_recipe_study_records_only_runs_at_every_default():
    from benchmarks.recipe_study import record
    run = lambda row, seed, acc, **kw: {"settings_key": "ft3ep", "row": row, "ratio": 1.0 if row == "teacher" else 2.0,  # noqa: E731
                                        "seed": seed, "accuracy": acc, "params_linear": 5e6} | kw
    pela_run = lambda seed, acc, **kw: run("pela_prog", seed, acc, factor_lr="matched", probe_samples=32, stages=2,  # noqa: E731
                                           feature_loss="relative") | kw
    runs = [run("teacher", 0, 0.78), run("teacher", 1, 0.76), pela_run(1, 0.765), pela_run(0, 0.755),
            pela_run(2, 0.5, factor_lr=1.0), pela_run(2, 0.5, student_mode="eval"), pela_run(2, 0.5, targets="x"),
            pela_run(2, 0.5, probe_samples=16), pela_run(2, 0.5, settings_key="ft5ep"), run("paper", 0, 0.7, factor_lr=1.0),
            run("teacher", 2, 0.9), pela_run(1, 0.775, speed_check=True, speed_check_stages="last"),
            pela_run(1, 0.6, speed_check=True), pela_run(2, 0.77, speed_check=False)]
    lines = record({"runs": runs}, "ft3ep", probes=32).splitlines()[2:]
    assert len(lines) == 2, lines  # the teacher and pela's two runs at every default: nothing else
    assert lines[0].startswith("| teacher | 1 |") and "| 78.00 / 76.00 / 90.00 | 81.33 ± 7.57 | — |" in lines[0]
    # seeds in order, the gap to the teacher on seeds 0 and 1; a run kept before the speed check existed ran without it
    assert "| 0, 1, 2 | 75.50 / 76.50 / 77.00 | 76.33 ± 0.76 | -5.00 |" in lines[1]
    checked = record({"runs": runs}, "ft3ep", probes=32, speed_check=True).splitlines()[2:]
    # the same teacher, its own student; not the run that checked speed at every stage of size, as pela did before
    assert len(checked) == 2 and "| 1 | 77.50 | 77.50 | +1.50 |" in checked[1], checked


def test_jane_austen_novels_read_from_the_debian_package(tmp_path):
    from benchmarks import austen
    books = austen.novels()
    assert sorted(books) == ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"]
    assert all(len(ps) > 1000 for ps in books.values())
    assert books["prideprejudice"][0].startswith("PRIDE AND PREJUDICE")
    assert any(p.startswith("It is a truth universally acknowledged") for p in books["prideprejudice"])
    train, heldout = austen.write_split(tmp_path)
    held = heldout.read_text().splitlines()
    shared = set(held) & set(train.read_text().splitlines())
    assert held == books["persuasion"] and all(len(p) < 40 for p in shared), shared  # headings alone ("CHAPTER 1") recur


def test_llm_distill_fits_its_deadline(tmp_path):
    """With a deadline the probe chooses the steps, and the run (evaluations and final scoring included) ends
    before it; without, the given steps run and are evaluated every --eval-every."""
    import time

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from conftest import tiny_llama, word_tokenizer
    finally:
        sys.path.remove(str(ROOT / "tests"))
    tiny_llama().save_pretrained(tmp_path / "lm")
    word_tokenizer().save_pretrained(tmp_path / "lm")
    common = ["benchmarks/llm_distill.py", "--model", str(tmp_path / "lm"), "--work", str(tmp_path / "work"), "--results",
              str(tmp_path / "r.json"), "--fraction", "0.4", "--batch-size", "2", "--pack", "16", "--eval-paragraphs", "4",
              "--final-paragraphs", "8", "--final-context", "32", "--calib-samples", "8", "--device", "cpu"]
    began = time.time()
    run_script(tmp_path, *common, "--steps", "4", "--eval-every", "2")
    took = time.time() - began  # start-up, set-up and 4 steps: this machine's fixed cost, first imports included
    fixed = json.loads((tmp_path / "r.json").read_text())["runs"]["sequential@0.4_b2x16_lr0.0001_steps4"]
    assert [c["step"] for c in fixed["curve"]] == [2, 4] and fixed["start_perplexity"] > 1 and fixed["device"] == "cpu"
    deadline = time.time() + took + 4
    run_script(tmp_path, *common, "--deadline", str(deadline))
    ended = time.time()
    (key, run), = [(k, r) for k, r in json.loads((tmp_path / "r.json").read_text())["runs"].items() if not k.endswith("_steps4")]
    steps = int(key.rsplit("_steps", 1)[1])
    assert steps > 50 and run["curve"][-1]["step"] == steps and len(run["curve"]) >= 10  # the time was used: steps of ms each
    assert ended < deadline + 10, (ended - deadline, steps)
    assert run["final_perplexity_8_paragraphs_ctx32"] > 1 and run["teacher_perplexity_8_paragraphs_ctx32"] > 1


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "benchmarks" / "results").iterdir()))
def test_every_result_is_quoted_by_the_docs(name):
    """A results file docs/ and the README do not name is a figure nobody can find: name it or remove it."""
    docs = "".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
    assert name in docs, f"benchmarks/results/{name} is named by no doc"


def test_benchmarks_import_each_other_as_a_package():
    """``from benchmarks.austen import ...``, never a bare sibling name that works only from one directory."""
    import ast

    siblings = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    bare = [f"{p.name}:{node.lineno}" for p in (ROOT / "benchmarks").glob("*.py") for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and any(name.split(".")[0] in siblings for name in ([node.module or ""] if isinstance(node, ast.ImportFrom)
                                                                  else [a.name for a in node.names]))]
    assert not bare, bare


def test_studies_use_the_harness_not_the_demo():
    """The demo keeps only the demo: a study reaches the task and recipe through benchmarks/harness.py,
    and imports `pela.demo` only to run the demo itself (`run_demo`)."""
    import ast

    found = []
    for p in (ROOT / "benchmarks").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pela.demo":
                found += [f"{p.name}:{a.name}" for a in node.names if a.name != "run_demo"]
            elif isinstance(node, ast.Import) and any(a.name == "pela.demo" for a in node.names):
                found.append(f"{p.name}:import pela.demo")
    assert not found, found
