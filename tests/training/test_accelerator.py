"""The process-group helpers: what every stage does when torchrun or accelerate launch started it."""

import torch.distributed as dist

from pela.training.accelerator import leave_process_group


def test_a_finished_process_leaves_its_group(tmp_path):
    """gloo's threads must stop before Python exits, or a rank that finished can still abort (SIGABRT)."""
    leave_process_group()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    leave_process_group()
    assert not dist.is_initialized()
