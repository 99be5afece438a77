"""Fault injection for tests/reliability/test_fault_injection.py (on PYTHONPATH for that test's runs only).

With PELA_FAULT_MARKER set, the checkpoint write of step PELA_FAULT_STEP pauses halfway (model and
optimizer written, RNG state and state.json not yet, nothing renamed) after creating the marker file,
so the test can SIGKILL the process in the middle of a checkpoint write.
"""

import os
import time

if os.environ.get("PELA_FAULT_MARKER"):
    import pela.checkpoint as _ckpt

    _original = _ckpt._rng_state
    _calls = [0]

    def _slow_rng_state():
        _calls[0] += 1
        if _calls[0] == int(os.environ.get("PELA_FAULT_NTH", "1")):
            open(os.environ["PELA_FAULT_MARKER"], "w").close()
            time.sleep(60)
        return _original()

    _ckpt._rng_state = _slow_rng_state
