"""What every command shares: named columns read alike."""

import json

import pytest
from conftest import run_cli


@pytest.mark.slow
def test_every_command_reads_named_columns(hf_bert_dir, tmp_path, capsys):
    """A TSV whose columns are not called text/label (GLUE's sentence, say) works in every command that
    reads data, once --text-field/--label-field name them; without them, the error says which option."""
    rows = "".join(f"w{i} w{(i * 3) % 90} w{i % 7}\t{'ab'[i % 2]}\n" for i in range(16))
    (tmp_path / "d.tsv").write_text("sentence\ttarget\n" + rows)
    data, fields = tmp_path / "d.tsv", ["--config", "text_field=sentence"]
    labelled = fields + ["--config", "label_field=target"]
    commands = [
        ["compress", hf_bert_dir, "--out", tmp_path / "k", "--param-budget", 0.5, "--calib", data, "--config", "calib_samples=16", "--config", "align=1"],
        ["distill", "--student", tmp_path / "k", "--teacher", hf_bert_dir, "--data", data, "--out", tmp_path / "s", "--steps", 1,
         "--batch-size", 4],
        ["compare", tmp_path / "s", hf_bert_dir, "--data", data],
        ["finetune", tmp_path / "s", "--data", data, "--out", tmp_path / "f", "--steps", 1, "--batch-size", 4],
        ["eval", tmp_path / "f", "--data", data],
    ]
    for command in commands:
        extra = labelled if command[0] in ("finetune", "eval", "distill") else fields
        code, _, err = run_cli(capsys, *command)
        assert code == 2 and "has no 'sentence'" not in err and "(its fields: sentence, target); name the text with text_field=NAME" in err, (command[0], err)
        if command[0] in ("finetune", "eval"):  # the text found, the labels not: the error names the columns there are
            code, _, err = run_cli(capsys, *command, *fields)
            assert code == 2 and "has no 'label' field (its fields: sentence, target); name the class column with label_field=NAME" in err, err
        code, _, err = run_cli(capsys, *command, *extra)
        assert code == 0, (command[0], err)
    # with one column of text besides the label (and numbers), pela reads it and says so
    (tmp_path / "sst2.tsv").write_text("idx\tsentence\tlabel\n" + "".join(f"{i}\tw{i} w{i % 7}\t{i % 2}\n" for i in range(16)))
    code, _, err = run_cli(capsys, "finetune", tmp_path / "s", "--data", tmp_path / "sst2.tsv", "--out", tmp_path / "f2", "--steps", 1,
                       "--batch-size", 4)
    assert code == 0 and "sst2.tsv: the text is its 'sentence' column (text_field=NAME names another)" in err, err
    # and a Hugging Face dataset's only ClassLabel column is its class
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"sentence": [f"w{i} w{i % 5}" for i in range(16)], "intent": [i % 2 for i in range(16)]})
    meta = {"info": {"features": {"intent": {"names": ["greet", "travel"], "_type": "ClassLabel"}}}}
    pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps(meta)}), tmp_path / "clinc.parquet")
    code, _, err = run_cli(capsys, "eval", tmp_path / "f2", "--data", tmp_path / "clinc.parquet")
    assert code == 2 and "none of the data's classes ('greet', 'travel') is one of the 2 classes the model was trained on ('0', '1')" in err, err
    code, _, err = run_cli(capsys, "finetune", tmp_path / "s", "--data", tmp_path / "clinc.parquet", "--out", tmp_path / "f3", "--steps", 1,
                       "--batch-size", 4)
    assert code == 0 and "clinc.parquet: the class is its 'intent' column (label_field=NAME names another)" in err, err
