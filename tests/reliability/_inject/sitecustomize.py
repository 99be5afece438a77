"""Fault injection for tests/reliability/test_fault_injection.py (on PYTHONPATH for that test's runs only).

With PELA_FAULT_MARKER set, the PELA_FAULT_NTH-th checkpoint write pauses at PELA_FAULT_AT after creating
the marker file, so the test can SIGKILL the process exactly there:

- ``rng`` (default): halfway through writing the checkpoint directory (model and optimizer written,
  RNG state and state.json not yet, nothing renamed);
- ``pointer``: while ``latest.json`` is replaced (its temporary file exists, nothing renamed);
- ``discard``: while the previous checkpoint is deleted (one of its files already gone);
- ``save``: while the final model is written into the run directory (under its temporary name).
"""

import os
import time

if os.environ.get("PELA_FAULT_MARKER"):
    import shutil
    import tempfile
    import types

    import pela.utils.files as _io

    import pela.training.checkpoint as _ckpt

    _at = os.environ.get("PELA_FAULT_AT", "rng")
    _calls = [0]

    def _pause_on_nth():
        _calls[0] += 1
        if _calls[0] == int(os.environ.get("PELA_FAULT_NTH", "1")):
            open(os.environ["PELA_FAULT_MARKER"], "w").close()
            time.sleep(60)

    if _at == "rng":
        _rng_state = _ckpt._rng_state

        def _paused_rng_state():
            _pause_on_nth()
            return _rng_state()

        _ckpt._rng_state = _paused_rng_state
    elif _at == "pointer":
        def _mkstemp(*args, **kwargs):
            made = tempfile.mkstemp(*args, **kwargs)
            if os.path.basename(made[1]).startswith(f".{_ckpt.LATEST}.tmp-"):
                _pause_on_nth()
            return made

        _io.tempfile = types.SimpleNamespace(**{**vars(tempfile), "mkstemp": _mkstemp})
    elif _at == "discard":
        def _rmtree(path, *args, **kwargs):
            files = sorted(p for p in os.listdir(path))
            if files:
                os.unlink(os.path.join(path, files[0]))
            _pause_on_nth()
            return shutil.rmtree(path, *args, **kwargs)

        _ckpt.shutil = types.SimpleNamespace(**{**vars(shutil), "rmtree": _rmtree})
    elif _at == "save":
        import pela.models.saving as _saving

        _write_model = _saving._write_model

        def _paused_write_model(model, target, *args, **kwargs):
            (target / "model.safetensors").write_bytes(b"\0" * 100)  # half-written, as a kill would leave it
            _pause_on_nth()
            return _write_model(model, target, *args, **kwargs)

        _saving._write_model = _paused_write_model
    else:
        raise SystemExit(f"PELA_FAULT_AT={_at!r}: expected rng, pointer, discard or save")
