"""Stages 2 and 3: the shared loop, checkpoints, distillation, fine-tuning, evaluation, comparison."""
