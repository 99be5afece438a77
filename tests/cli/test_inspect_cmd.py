"""`pela data`: what a dataset holds, as pela reads it."""

import json

from conftest import run_cli


def test_data_command(tmp_path, capsys):
    (tmp_path / "d.csv").write_text("text,label\nhello [bold] world,a\nbye,b\nhi,a\n")
    code, out, err = run_cli(capsys, "data", tmp_path / "d.csv")
    assert code == 0 and "CSV" in out and "2: a (2), b (1)" in out and "hello [bold] world" in out, out + err
    code, out, _ = run_cli(capsys, "data", tmp_path / "d.csv", "--json")
    assert code == 0 and json.loads(out)["classes"] == {"a": 2, "b": 1}
    code, _, err = run_cli(capsys, "data", tmp_path / "missing.csv")
    assert code == 2 and err.startswith("error: dataset") and "does not exist" in err
