"""JSON lines: a text and a label per record."""

import json

from pela.data.load import load_dataset


def test_json_lines_name_their_text_and_label(tmp_path):
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": f"t{i}", "label": "xy"[i % 2]}) for i in range(4)))
    ds = load_dataset(tmp_path / "b.jsonl")
    assert ds.classes == ["x", "y"] and ds[1] == {"text": "t1", "label": 1}
