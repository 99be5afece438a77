"""Does the whitening's ridge matter? pela's factorization at several ``pela.linalg.WHITEN_DAMPING``s.

Whitened SVD factorizes ``W·S`` where ``S Sᵀ = E[x xᵀ] + δ·I`` (δ = the damping × the mean eigenvalue): a
small ridge fits the calibration text's directions closely, a large one leans towards plain SVD and so
towards the teacher's behaviour on other text. For each damping this makes the ``pela_nd`` student of
`recipe_study.py` (calibrated on the demo's glosses, ranks allocated by sensitivity, no distillation; kept
in ``--work``) and measures, as `dropout_floor.py` does, its feature loss against the teacher
in eval mode on held-out glosses and on paragraphs of *Persuasion*.

    nice .venv/bin/python benchmarks/whiten_damping.py [--dampings 0.001,0.01,0.1] [--ratio 2] [--seed 3] [--samples 256]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _results import report
from dropout_floor import losses, text
from recipe_study import PROBES, calibrated
from torch.utils.data import DataLoader

import pela
import pela.linalg
from pela import arch
from pela.data.collate import Collator
from pela.demo import DemoSettings, demo_data, minilm_dir
from pela.evaluation.compare import eval_subset


def student(work: Path, damping: float, ratio: float, seed: int, settings: DemoSettings, probe_samples: int) -> Path:
    """The ``pela_nd`` student at ``damping``, made once and kept under ``work``."""
    kept = work / f"nd_d{damping:g}_k{ratio:g}_seed{seed}_p{probe_samples}"
    if not (kept / "pela.json").is_file():
        default, pela.linalg.WHITEN_DAMPING = pela.linalg.WHITEN_DAMPING, damping
        try:
            model = pela.load(str(minilm_dir()))
            calibrated(model, ratio, seed, demo_data(work / "data", settings).unlabeled, settings, probe_samples, sequential=False)
        finally:
            pela.linalg.WHITEN_DAMPING = default
        pela.save_pretrained(model, kept, overwrite=True)
    return kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dampings", default="0.001,0.01,0.1", help="ridges relative to the mean eigenvalue (pela's: 0.01)")
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--samples", type=int, default=256, help="examples of each text measured on")
    p.add_argument("--probe-samples", type=int, default=PROBES, help="sensitivity probes (recipe_study.py's)")
    p.add_argument("--calib-samples", type=int, default=DemoSettings.calib_samples)
    p.add_argument("--work", type=Path, default=Path("runs/bench_damping"), help="the students and the demo's data")
    args = p.parse_args()
    settings = DemoSettings(calib_samples=args.calib_samples)
    students = {float(d): student(args.work, float(d), args.ratio, args.seed, settings, args.probe_samples) for d in args.dampings.split(",")}
    teacher = pela.load(str(minilm_dir()))
    names = arch.find_blocks(teacher)
    models = {str(path): pela.load(str(path)) for path in students.values()}
    result = {"ratio": args.ratio, "seed": args.seed, "samples": args.samples, "default": pela.linalg.WHITEN_DAMPING, "texts": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, austen in (("glosses", False), ("Persuasion", True)):
            loader = DataLoader(eval_subset(text(Path(tmp), austen=austen), args.samples), batch_size=32, collate_fn=Collator(teacher))
            measured = losses(teacher, models, loader, names, modes=("eval_mode",))
            result["texts"][name] = {"floor": measured.pop(None)["train_mode"]["relative"],
                                     **{f"{d:g}": measured[str(path)]["eval_mode"]["relative"] for d, path in students.items()}}
    report("whiten_damping", result)


if __name__ == "__main__":
    main()
