"""pela.training.checkpoint: crash-safe checkpoints."""



def test_removing_checkpoints_also_removes_temporaries_of_killed_writes(tmp_path):
    from pela.training.checkpoint import LATEST, remove_checkpoints

    root = tmp_path / "checkpoints"
    (root / "checkpoint-4").mkdir(parents=True)
    (root / "checkpoint-4" / "state.json").write_text("{}")
    (root / ".checkpoint-5.tmp-abc").mkdir()  # killed while writing the next checkpoint
    (root / ".checkpoint-4.old-123").mkdir()  # killed while swapping an overwritten one
    (root / "checkpoint-2").mkdir()  # an old one whose deletion was killed, state.json already gone
    (root / "checkpoint-2" / "model.safetensors").write_text("")
    (root / LATEST).write_text("{}")
    (root / f".{LATEST}.tmp-xyz").write_text("{")  # killed while replacing the pointer
    remove_checkpoints(root)
    assert not root.exists()
