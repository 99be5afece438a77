"""Multiple-choice examples: a prompt, its choices and the index of the right one.

Read from the layouts such sets are published in: a list of strings (``choices``, ``endings``,
``options``) or ARC's ``{"text": [...], "label": [...]}``; the answer as an index (``label``,
``answer``, ``gold``; ``"2"`` too), a choice label or letter (ARC's ``answerKey``: ``"B"``), or the
text of the right choice. Files are read as `pela.load_dataset` reads records (JSON(L), CSV/TSV,
Parquet, Arrow, a Hugging Face dataset folder), and a ``datasets.Dataset`` or a list of dicts is
taken as it is.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pela.data.cache import data_format
from pela.data.json_rows import read_rows
from pela.data.tables import TableRows, read_tables, table_files, table_split
from pela.errors import PelaError

PROMPT_FIELDS = ("context", "ctx", "question", "query", "prompt", "goal", "text")
CHOICE_FIELDS = ("choices", "endings", "options")
ANSWER_FIELDS = ("answer", "label", "gold", "answerKey")


@dataclass(frozen=True)
class ChoiceExample:
    prompt: str
    choices: tuple[str, ...]
    answer: int


def read_choices(
    source: Any,
    *,
    split: str = "test",
    prompt_field: str | None = None,
    choices_field: str | None = None,
    answer_field: str | None = None,
) -> list[ChoiceExample]:
    """The multiple-choice examples of ``source`` (a path, a ``datasets.Dataset`` or a list of
    dicts)."""
    rows = _rows(source, split)
    if not len(rows):
        raise PelaError("the multiple-choice data is empty")
    first = rows[0]
    if not isinstance(first, dict):
        raise PelaError(
            f"multiple-choice examples are records (prompt, choices, answer); the first is "
            f"{type(first).__name__}"
        )
    prompt = _field(first, prompt_field, PROMPT_FIELDS, "prompt", "text_field")
    choices = _field(first, choices_field, CHOICE_FIELDS, "choices", "choices_field")
    answer = _field(first, answer_field, ANSWER_FIELDS, "answer", "label_field")
    return [_example(row, i, prompt, choices, answer) for i, row in enumerate(rows)]


def _rows(source: Any, split: str) -> Sequence[Any]:
    kind = type(source).__module__.split(".")[0] + "." + type(source).__name__
    if kind == "datasets.Dataset":
        return TableRows(
            (
                source.flatten_indices()
                if getattr(source, "_indices", None) is not None
                else source
            ).data.table
        )
    if isinstance(source, (list, tuple)):
        return source
    p = Path(source).expanduser()
    if not p.exists():
        raise PelaError(f"dataset {p} does not exist")
    tables = table_files(p)
    if tables:
        return read_tables(table_split(p, tables, split) if p.is_dir() else tables)[0]
    if p.is_file() and data_format(p) in (".jsonl", ".json", ".csv", ".tsv"):
        return read_rows(p)
    raise PelaError(
        f"cannot read multiple-choice examples from {p}: give records (.jsonl, .json, .csv, .tsv, "
        ".parquet, .arrow, or a folder of Parquet/Arrow files)"
    )


def _field(
    row: dict[str, Any], given: str | None, candidates: tuple[str, ...], what: str, flag: str
) -> str:
    if given is not None:
        if given not in row:
            raise PelaError(
                f"the records have no field {given!r} (their fields: {', '.join(map(repr, row))})"
            )
        return given
    found = next((f for f in candidates if f in row), None)
    if found is None:
        raise PelaError(
            f"cannot tell which field holds the {what}: none of {', '.join(candidates)} in the "
            f"records (their fields: {', '.join(map(repr, row))}); name it with {flag}"
        )
    return found


def _example(
    row: dict[str, Any], i: int, prompt_field: str, choices_field: str, answer_field: str
) -> ChoiceExample:
    where = f"record {i + 1}"
    prompt, raw, answer = row.get(prompt_field), row.get(choices_field), row.get(answer_field)
    labels: list[str] = []
    # ARC: {"text": [...], "label": ["A", "B", ...]}
    if isinstance(raw, dict) and isinstance(raw.get("text"), list):
        labels = [str(x) for x in raw.get("label") or []]
        raw = raw["text"]
    if not isinstance(prompt, str):
        raise PelaError(f"{where}: the prompt ({prompt_field!r}) is not text: {prompt!r:.60}")
    if (
        not isinstance(raw, (list, tuple))
        or len(raw) < 2
        or not all(isinstance(c, str) for c in raw)
    ):
        raise PelaError(
            f"{where}: the choices ({choices_field!r}) must be a list of at least 2 texts, got "
            f"{raw!r:.80}"
        )
    # a choice is scored from the prompt before it: without either, there is nothing to score or
    # nothing to score from
    if not prompt.strip():
        raise PelaError(
            f"{where}: the prompt ({prompt_field!r}) is empty: a choice is scored as its "
            "continuation"
        )
    empty = next((j for j, c in enumerate(raw) if not c.strip()), None)
    if empty is not None:
        raise PelaError(
            f"{where}: choice {empty + 1} ({choices_field!r}) is empty: it has no tokens to score"
        )
    choices = tuple(raw)
    return ChoiceExample(
        prompt, choices, _answer_index(answer, choices, labels, where, answer_field)
    )


def _answer_index(
    answer: Any, choices: tuple[str, ...], labels: list[str], where: str, field: str
) -> int:
    index: int | None = None
    if isinstance(answer, bool):
        index = None
    elif isinstance(answer, int):
        index = answer
    elif isinstance(answer, str):
        text = answer.strip()
        if text in labels:
            index = labels.index(text)
        elif text.isdigit():
            index = int(text)
        elif answer in choices:
            index = choices.index(answer)
        elif len(text) == 1 and text.upper() in string.ascii_uppercase and not labels:
            index = string.ascii_uppercase.index(text.upper())
    if index is None or not 0 <= index < len(choices):
        raise PelaError(
            f"{where}: the answer ({field!r} = {answer!r:.40}) names none of its {len(choices)} "
            "choices (give an index from 0, a letter, a choice label or the right choice's text)"
        )
    return index
