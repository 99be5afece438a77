"""Peak memory on a CPU: the tensors live at once in one eager pass."""

import torch

from pela.bench import eager_peak_bytes


def test_cpu_peak_memory_counts_weights_inputs_and_activations():
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
    x = torch.randn(16, 64)
    weights = 4 * sum(p.numel() for p in model.parameters())
    # the peak is while ReLU runs: the input, the first layer's output and ReLU's output are all alive
    assert eager_peak_bytes(model, (x,), {}) == weights + x.nbytes + 2 * 16 * 128 * 4
    model[1].inplace = True  # ReLU writes over its input: now the peak is in the last layer, its output alive too
    assert eager_peak_bytes(model, (x,), {}) == weights + x.nbytes + 16 * 128 * 4 + 16 * 2 * 4


def test_cpu_peak_memory_of_a_model_that_hands_a_parameter_to_a_module():
    """CaiT's class token, a sinusoidal position table: a parameter given to a submodule as it is.
    PyTorch's MemTracker fails on these (it hooks every input that requires grad)."""

    class Prefixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.token, self.mix = torch.nn.Parameter(torch.zeros(1, 8)), torch.nn.Linear(8, 8)

        def forward(self, x):
            return torch.cat([self.mix(self.token), self.mix(x)])

    model, x = Prefixed(), torch.randn(3, 8)
    weights = 4 * sum(p.numel() for p in model.parameters())
    # at the end: the token's row and the input's three rows out of the layer, and the four rows joined
    assert eager_peak_bytes(model, (x,), {}) == weights + x.nbytes + (1 + 3 + 4) * 8 * 4
    assert all(p.requires_grad for p in model.parameters())
