"""pela.utils.device: a named device, checked in one line."""

import pytest
import torch

from pela.errors import PelaError
from pela.utils.device import resolve_device


def test_devices_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(PelaError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(PelaError, match="not one pela runs on"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(PelaError, match="no CUDA GPU is available"):
            resolve_device("cuda:0")
