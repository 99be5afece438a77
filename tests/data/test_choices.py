import json

import pytest

from pela import PelaError
from pela.data.choices import ChoiceExample, read_choices


def test_the_layouts_multiple_choice_sets_come_in(tmp_path):
    rows = [{"ctx": "a", "endings": ["x", "y", "z"], "label": "2"},  # HellaSwag: index as text
            {"ctx": "b", "endings": ["x", "y"], "label": 1}]
    assert read_choices(rows) == [ChoiceExample("a", ("x", "y", "z"), 2), ChoiceExample("b", ("x", "y"), 1)]
    arc = [{"question": "q", "choices": {"text": ["p", "q", "r"], "label": ["A", "B", "C"]}, "answerKey": "C"},
           {"question": "q", "choices": {"text": ["p", "q"], "label": ["1", "2"]}, "answerKey": "1"}]
    assert [e.answer for e in read_choices(arc)] == [2, 0]  # a choice label, even one that looks like an index
    letters = [{"question": "q", "options": ["p", "q", "r"], "answer": "b"}, {"question": "q", "options": ["p", "q"], "answer": "p"}]
    assert [e.answer for e in read_choices(letters)] == [1, 0]  # a letter; the right choice's text
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_choices(path) == read_choices(rows)


def test_the_data_is_read_from_a_hugging_face_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"prompt": "p", "choices": ["a", "b"], "answer": 1}] * 3).select([2, 0])
    assert read_choices(ds) == [ChoiceExample("p", ("a", "b"), 1)] * 2


@pytest.mark.parametrize("rows, fields, message", [
    ([{"text": "a", "label": 0}], {}, "which field holds the choices"),
    ([{"text": "a", "choices": ["x"], "label": 0}], {}, "at least 2 texts"),
    ([{"text": "a", "choices": ["x", "y"], "label": 5}], {}, "names none of its 2 choices"),
    ([{"text": "a", "choices": ["x", "y"], "label": "maybe"}], {}, "names none"),
    ([{"text": 3, "choices": ["x", "y"], "label": 0}], {}, "is not text"),
    ([{"text": "a", "choices": ["x", "y"], "label": 0}], {"answer_field": "gold"}, "no field 'gold'"),
    ([], {}, "empty"),
])
def test_bad_records_get_one_clear_error(rows, fields, message):
    with pytest.raises(PelaError, match=message):
        read_choices(rows, **fields)
