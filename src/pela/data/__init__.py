"""Datasets for distillation and fine-tuning, and the collator that turns examples into model
inputs."""
