import os
import platform
import subprocess
import sys

import pytest

from pela.utils.memory import ENV, keep_freed_memory

pytestmark = pytest.mark.slow  # fresh Python processes

# A child process allocates and frees a 64 MiB tensor (above glibc's largest mmap threshold) ten
# times after two warm-up rounds, and prints whether the setting took and its page faults meanwhile.
CHILD = """
import resource, sys, torch
from pela.utils.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    t = torch.ones(16 * 2**20); del t
before = faults()
for _ in range(10):
    t = torch.ones(16 * 2**20); del t
print(applied, faults() - before)
"""

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _child(mode: str, **env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_memory_is_reused_without_new_page_faults():
    applied, kept = _child("keep")
    assert applied == GLIBC
    _, default = _child("default")
    if GLIBC:
        # by default each 64 MiB block is mapped afresh: at least one fault per 2 MiB page even with huge pages
        assert default >= 10 * 32, default
        # kept: no faults, or now and then one block's (16,384 pages: the heap grew once, seen 1 run in 5);
        # the default faults every one of the ten
        assert kept * 5 < default, (kept, default)


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_environment_turns_it_off(value, monkeypatch):
    monkeypatch.setenv(ENV, value)
    assert keep_freed_memory() is False


def test_environment_turns_it_off_in_a_fresh_process():
    applied, _ = _child("keep", **{ENV: "0"})
    assert applied is False
