"""Stages 2 and 3: the shared loop, checkpoints, evaluations during training, distillation,
fine-tuning, and `shrink` (stages 1 and 2 in one call)."""
