"""Records: CSV, TSV, JSON, JSONL, Parquet and Arrow rows of text, sentence pairs or images (read through load_dataset)."""

import csv
import gzip
import io
import json
import pickle
import random
import re

import pytest
from conftest import hf_bert, timm_vit
from PIL import Image

from pela import PelaError
from pela.data.collate import Collator
from pela.data.json_rows import JsonListRows
from pela.data.lines import LineRows
from pela.data.load import describe, load_dataset
from pela.data.tables import Cell, ChainRows


def test_more_record_formats(tmp_path):
    # a JSON list of records, or one wrapped in an object; a CSV saved by Excel (byte-order mark)
    rows = [{"text": f"t{i}", "label": "xy"[i % 2]} for i in range(4)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    for name in ("a.json", "b.json"):
        ds = load_dataset(tmp_path / name)
        assert ds.classes == ["x", "y"] and ds[1] == {"text": "t1", "label": 1}
    (tmp_path / "c.json").write_text(json.dumps({"text": "not a list"}))
    with pytest.raises(PelaError, match="must hold a list of records"):
        load_dataset(tmp_path / "c.json")
    (tmp_path / "excel.csv").write_bytes("text,label\nhello,a\n".encode("utf-8-sig"))
    assert load_dataset(tmp_path / "excel.csv")[0] == {"text": "hello", "label": 0}
    (tmp_path / "semicolons.csv").write_text('text;label\n"hello, world";a\nbye;b\n')  # a spreadsheet where , is the decimal mark
    assert load_dataset(tmp_path / "semicolons.csv")[0] == {"text": "hello, world", "label": 0}
    (tmp_path / "mac.csv").write_bytes(b'text,label\r"hi, there",a\rbye,b\r')  # Excel's "CSV (Macintosh)": lines end in \r
    assert [load_dataset(tmp_path / "mac.csv")[i] for i in (0, 1)] == [{"text": "hi, there", "label": 0}, {"text": "bye", "label": 1}]


def test_sentence_pairs(tmp_path, hf_bert_dir):
    from transformers import AutoTokenizer

    (tmp_path / "mrpc.tsv").write_text("sentence1\tsentence2\tlabel\nw1 w2\tw3\t1\nw4\tw5 w6 w7\t0\n")
    ds = load_dataset(tmp_path / "mrpc.tsv", text_field="sentence1, sentence2")
    assert ds[0] == {"text": "w1 w2", "text_pair": "w3", "label": 1} and ds.lengths == [7, 10]
    batch = Collator(hf_bert(), tokenizer=AutoTokenizer.from_pretrained(hf_bert_dir))([ds[0], ds[1]])
    assert batch["token_type_ids"][0].tolist().count(1) == 2  # w3 and its [SEP] are the second segment
    with pytest.raises(PelaError, match="one field, or two"):
        load_dataset(tmp_path / "mrpc.tsv", text_field="sentence1,sentence2,label")
    with pytest.raises(PelaError, match="record 1 has no 'question'"):
        load_dataset(tmp_path / "mrpc.tsv", text_field="sentence1,question")


def test_image_records_with_labels(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), "red").save(tmp_path / "img" / f"{i}.png")
    # Hugging Face imagefolder metadata names the file file_name; paths are relative to the file
    (tmp_path / "meta.jsonl").write_text("\n".join(json.dumps({"file_name": f"img/{i}.png", "label": "ab"[i % 2]}) for i in range(3)))
    (tmp_path / "meta.csv").write_text("image,label\n" + "".join(f"img/{i}.png,{'ab'[i % 2]}\n" for i in range(3)))
    for name in ("meta.jsonl", "meta.csv"):
        ds = load_dataset(tmp_path / name)
        assert ds.classes == ["a", "b"] and set(ds[1]) == {"image", "label"} and ds[1]["label"] == 1
        assert ds.lengths is None
        batch = Collator(timm_vit())([ds[0], ds[1]])
        assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [0, 1]
    (tmp_path / "code.jsonl").write_text(json.dumps({"path": "src/a.py", "text": "def f(): pass"}) + "\n")
    assert load_dataset(tmp_path / "code.jsonl")[0] == {"text": "def f(): pass"}  # a path that is no image is not one
    (tmp_path / "missing.csv").write_text("image,label\nimg/nope.png,a\n")
    with pytest.raises(PelaError, match="cannot read image"):
        load_dataset(tmp_path / "missing.csv")[0]


def _png(color):
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def _write_parquet(path, columns, class_names=None, label="label"):
    """A Parquet file as the Hugging Face hub serves datasets: ClassLabel names in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if class_names:
        meta = {"info": {"features": {label: {"names": class_names, "_type": "ClassLabel"}}}}
        table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_parquet_dataset_repository(tmp_path):
    """A snapshot of a hub dataset: data/<split>-*.parquet, images as bytes, integer labels with names."""
    images = [{"bytes": _png(c), "path": None} for c in ("red", "green", "blue")]
    _write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", {"img": images, "label": [2, 0, 1]},
                   ["plane", "car", "bird"])
    _write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", {"img": images[:2], "label": [1, 1]},
                   ["plane", "car", "bird"])
    train = load_dataset(tmp_path)
    assert train.classes == ["plane", "car", "bird"]  # the dataset's order, so label 2 stays "bird"
    assert len(train) == 3 and train[0]["label"] == 2 and train[0]["image"].getpixel((0, 0)) == (255, 0, 0)
    test = load_dataset(tmp_path, split="test", classes=train.classes)
    assert len(test) == 2 and test[0]["label"] == 1
    batch = Collator(timm_vit())([train[0], train[1]])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [2, 0]
    # the encoded images stay in Arrow's buffers until an example is read; a pickled copy (a spawned
    # DataLoader worker's) reads the same
    assert all(isinstance(row["img"], Cell) for row in train.rows)
    assert pickle.loads(pickle.dumps(train))[2]["image"].getpixel((0, 0)) == train[2]["image"].getpixel((0, 0)) == (0, 0, 255)


def test_parquet_text_and_unlabelled_test_split(tmp_path):
    # GLUE on the hub: sentence pairs; its test split's labels are -1, that is, none
    cols = {"sentence1": ["a b", "c"], "sentence2": ["d", "e f"], "label": [1, 0]}
    _write_parquet(tmp_path / "train.parquet", cols, ["not_equivalent", "equivalent"])
    ds = load_dataset(tmp_path / "train.parquet", text_field="sentence1,sentence2")
    assert ds.classes == ["not_equivalent", "equivalent"] and ds[0] == {"text": "a b", "text_pair": "d", "label": 1}
    _write_parquet(tmp_path / "glue" / "test-0.parquet", {**cols, "label": [-1, -1]}, ["not_equivalent", "equivalent"])
    _write_parquet(tmp_path / "glue" / "validation-0.parquet", cols, ["not_equivalent", "equivalent"])
    assert load_dataset(tmp_path / "glue", split="test", text_field="sentence1,sentence2")[1]["label"] == 0  # validation
    (tmp_path / "glue" / "validation-0.parquet").unlink()
    unlabelled = load_dataset(tmp_path / "glue", split="test", text_field="sentence1,sentence2")
    assert unlabelled.classes is None and "label" not in unlabelled[0]
    assert unlabelled.unlabelled == "test-0.parquet's 'label' field holds no labels (a test split without answers, say)"
    with pytest.raises(PelaError, match="no train split"):
        load_dataset(tmp_path / "glue")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(PelaError, match="not a readable Parquet file"):
        load_dataset(tmp_path / "broken.parquet")


def _write_arrow(path, columns, class_names=None, *, stream=True, metadata=True):
    """An Arrow file as Hugging Face datasets writes it (the stream format; ClassLabel names in the schema)."""
    import pyarrow as pa

    table = pa.table(columns)
    if class_names and metadata:
        meta = {"info": {"features": {"label": {"names": class_names, "_type": "ClassLabel"}}}}
        table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink:
        with (pa.ipc.new_stream if stream else pa.ipc.new_file)(sink, table.schema) as writer:
            writer.write_table(table)


def test_save_to_disk_folder(tmp_path):
    """DatasetDict.save_to_disk: dataset_dict.json, then <split>/data-*.arrow beside dataset_info.json and state.json."""
    names = ["neg", "pos"]
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    _write_arrow(tmp_path / "train" / "data-00000-of-00002.arrow", {"text": ["good", "bad"], "label": [1, 0]}, names)
    _write_arrow(tmp_path / "train" / "data-00001-of-00002.arrow", {"text": ["fine"], "label": [1]}, names)
    _write_arrow(tmp_path / "test" / "data-00000-of-00001.arrow", {"text": ["awful", "great"], "label": [0, 1]}, names)
    for split in ("train", "test"):
        (tmp_path / split / "state.json").write_text(json.dumps({"_split": split}))
        (tmp_path / split / "dataset_info.json").write_text(json.dumps({"features": {}}))
    train = load_dataset(tmp_path)
    assert train.classes == names and [train[i] for i in range(3)] == [
        {"text": "good", "label": 1}, {"text": "bad", "label": 0}, {"text": "fine", "label": 1}]
    test = load_dataset(tmp_path, split="test", classes=train.classes)
    assert [test[i]["label"] for i in range(2)] == [0, 1]
    one = load_dataset(tmp_path / "test")  # Dataset.save_to_disk: one split, no split folders
    assert len(one) == 2 and one.classes == names
    assert isinstance(train.rows, ChainRows) and train.rows[2] == {"text": "fine", "label": 1}  # rows stay in Arrow
    _write_arrow(tmp_path / "test" / "data-00000-of-00001.arrow", {"text": ["awful"], "label": [2]}, names)
    with pytest.raises(PelaError, match="record 1 has label 2, but the dataset names 2 classes"):
        load_dataset(tmp_path / "test")


def test_datasets_cache_arrow_files(tmp_path):
    """The datasets cache: <builder>-<split>.arrow, class names only in dataset_info.json, map() results beside."""
    info = {"features": {"text": {"dtype": "string", "_type": "Value"},
                         "label": {"names": ["world", "sports", "business"], "_type": "ClassLabel"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    _write_arrow(tmp_path / "ag_news-train.arrow", {"text": ["a", "b"], "label": [2, 1]}, metadata=False)
    _write_arrow(tmp_path / "ag_news-test.arrow", {"text": ["c"], "label": [0]}, stream=False)  # Arrow's file format
    _write_arrow(tmp_path / "cache-0123abcd.arrow", {"input_ids": [[1, 2]]})  # a .map() result: not a split
    train = load_dataset(tmp_path)
    assert train.classes == ["world", "sports", "business"] and train[0] == {"text": "a", "label": 2}
    assert len(train) == 2
    test = load_dataset(tmp_path, split="test")
    assert len(test) == 1 and test[0]["label"] == 0
    (tmp_path / "broken.arrow").write_bytes(b"ARROW1 not really")
    with pytest.raises(PelaError, match="not a readable Arrow file"):
        load_dataset(tmp_path / "broken.arrow")


def test_gzip_compressed_files(tmp_path):
    """Corpora often come gzip-compressed: text, JSONL, CSV and C4's JSON lines under .json.gz."""
    import gzip

    (tmp_path / "corpus.txt.gz").write_bytes(gzip.compress(b"first line\n\nsecond line\n"))
    text = load_dataset(tmp_path / "corpus.txt.gz")
    assert len(text) == 2 and text[1] == {"text": "second line"} and text.lengths == [11, 12]
    rows = "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(3))
    (tmp_path / "train.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    (tmp_path / "c4-train.00000-of-01024.json.gz").write_bytes(gzip.compress(rows.encode()))
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress("text,label\nx,a\ny,b\n".encode("utf-8-sig")))
    for name in ("train.jsonl.gz", "c4-train.00000-of-01024.json.gz"):
        ds = load_dataset(tmp_path / name)
        assert len(ds) == 3 and ds.classes == ["a", "b"] and ds[1] == {"text": "t1", "label": 1}
    assert load_dataset(tmp_path / "rows.csv.gz")[1] == {"text": "y", "label": 1}
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(rows.encode())[:-12])
    (tmp_path / "fake.txt.gz").write_bytes(b"plain text, not gzip\n")
    for name in ("cut.jsonl.gz", "fake.txt.gz"):
        with pytest.raises(PelaError, match="not a readable gzip file"):
            load_dataset(tmp_path / name)
    (tmp_path / "bad.json").write_text('{"text": "a"}\n{"text": oops}\n')
    with pytest.raises(PelaError, match=r"bad.json:2 is not valid JSON"):
        load_dataset(tmp_path / "bad.json")


def test_pickled_data_is_refused_unread(tmp_path):
    """CIFAR's python batches are pickles: refused by their header, never unpickled."""
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({"data": [1, 2], "labels": [0]}, protocol=4))
    with pytest.raises(PelaError, match="is a Python pickle"):
        load_dataset(tmp_path / "data_batch_1")


def _reference(path, fmt):
    """What csv.DictReader and json read from the whole file: the rows pela must give."""
    with (gzip.open(path, "rt", encoding="utf-8-sig", newline="") if path.suffix == ".gz"
          else open(path, encoding="utf-8-sig", newline="")) as f:
        if fmt == "jsonl":
            return [json.loads(line) for line in f if line.strip()]
        text = io.StringIO(f.read().lstrip("\r\n"), newline="")  # blank lines before the header: skipped, as pandas does
        return list(csv.DictReader(text, **(dict(delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else {})))


def test_text_records_stay_on_disk_and_read_as_csv_and_json_do(tmp_path):
    """JSONL, CSV and TSV rows are byte ranges of the file (or of its decompressed bytes), parsed when
    read: the same records csv.DictReader and json give, quoted newlines, byte-order marks, blank
    lines and short rows included, in this process, a pickled copy and forked loader workers."""
    from torch.utils.data import DataLoader

    rng = random.Random(0)
    pieces = ["plain", "comma, inside", 'a "quoted" word', "two\nlines", "cr\r\nlf", "ünïcödé ✓", " padded ", "semi;colon"]
    rows = [{"text": " ".join(rng.choices(pieces, k=3)), "label": rng.choice("abc")} for _ in range(200)]
    with open(tmp_path / "r.csv", "w", newline="", encoding="utf-8-sig") as f:
        f.write("\r\n")  # a blank line before the header
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(row)
            f.write("\r\n" if i % 50 == 7 else "")  # blank lines between records
        f.write("short row with no label\n")
    with open(tmp_path / "r.jsonl", "w", encoding="utf-8-sig") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + ("\n\n" if i % 40 == 3 else "\n") for i, row in enumerate(rows))
    flat = [{k: " ".join(v.split()) for k, v in row.items()} for row in rows]  # GLUE's TSV: no tabs or newlines in a field
    (tmp_path / "r.tsv").write_text("\ntext\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in flat))
    for name in ("r.csv", "r.jsonl", "r.tsv"):
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress((tmp_path / name).read_bytes()))
    for name in ("r.csv", "r.jsonl", "r.tsv", "r.csv.gz", "r.jsonl.gz", "r.tsv.gz"):
        path, fmt = tmp_path / name, name.split(".")[1]
        expected = _reference(path, fmt)
        assert len(expected) == 200 + (fmt == "csv")
        if fmt == "csv":  # the short row is a record with no label, and the others have one
            with pytest.raises(PelaError, match="record 201 has no 'label' while others do"):
                load_dataset(path)
            ds = load_dataset(path, label_field="none")
        else:
            ds = load_dataset(path)
        assert isinstance(ds.rows, LineRows) and list(ds.rows) == [ds.rows[i] for i in range(len(ds))] == expected
        items = [ds[i] for i in range(len(ds))]
        assert [item["text"] for item in items] == [row["text"] for row in expected]
        if fmt != "csv":
            assert ds.classes == ["a", "b", "c"] and [items[i]["label"] for i in range(3)] == ["abc".index(r["label"]) for r in expected[:3]]
        assert ds.lengths == [len(row["text"]) for row in expected]
        copy = pickle.loads(pickle.dumps(ds))  # a spawned worker's
        assert [copy[i] for i in (0, 99, len(ds) - 1)] == [items[i] for i in (0, 99, len(ds) - 1)]
        loader = DataLoader(ds, batch_size=64, num_workers=2, multiprocessing_context="fork", collate_fn=list)
        assert [item for batch in loader for item in batch] == items


def test_json_lists_stay_on_disk_and_read_as_json_does(tmp_path):
    """A JSON list is the byte ranges of its elements, parsed when read: the records json.load gives,
    brackets, commas and quotes inside strings, non-ASCII text, nesting, a byte-order mark and gzip
    included, in this process, a pickled copy and forked loader workers."""
    from torch.utils.data import DataLoader

    rng = random.Random(0)
    pieces = ["plain", "], {", '"quoted"', "back\\slash", "ünïcödé ✓ 😀", "two\nlines", "[nested]", "tab\there"]
    rows = [{"text": " ".join(rng.choices(pieces, k=3)), "label": rng.choice("abc"), "meta": {"ids": [i, {"k": "]"}]}}
            for i in range(120)]
    (tmp_path / "indented.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8-sig")
    (tmp_path / "compact.json").write_text(json.dumps(rows, separators=(",", ":")))  # \u escapes, no spaces
    (tmp_path / "compact.json.gz").write_bytes(gzip.compress((tmp_path / "compact.json").read_bytes()))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}, indent=1))  # one key holding the list
    for name in ("indented.json", "compact.json", "compact.json.gz", "wrapped.json"):
        ds = load_dataset(tmp_path / name)
        assert isinstance(ds.rows, JsonListRows) and len(ds) == 120
        assert list(ds.rows) == [ds.rows[i] for i in range(120)] == rows
        items = [ds[i] for i in range(len(ds))]
        assert [item["text"] for item in items] == [row["text"] for row in rows] and ds.classes == ["a", "b", "c"]
        copy = pickle.loads(pickle.dumps(ds))  # a spawned worker's
        assert [copy[i] for i in (0, 119)] == [items[i] for i in (0, 119)]
        loader = DataLoader(ds, batch_size=32, num_workers=2, multiprocessing_context="fork", collate_fn=list)
        assert [item for batch in loader for item in batch] == items
    assert describe(load_dataset(tmp_path / "compact.json"))["kind"] == "JSON list"
    for text, fragment in [('[{"text": "a"},]', "Expecting value"), ('[{"text": "a"} {"text": "b"}]', "expected ',' or ']'"),
                           ('[{"text": "a"}]\n[]', "extra data after the list (line 2)"), ('[{"text": "a"},\n', "Expecting value (line 2)"),
                           ("[]", "is empty"), ('{"data": []}', "is empty"), ('{"data": [], "v": 1}', "must hold a list of records"),
                           ('{"data": [{"text": "a"}]} []', "extra data after the list"), ('{"da', "Unterminated string")]:
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(PelaError, match=re.escape(fragment)):
            load_dataset(tmp_path / "bad.json")


def test_csv_fields_may_hold_whole_documents(tmp_path):
    document = "word " * 60_000  # 300 KB, over the csv module's default field limit of 128 KiB
    with open(tmp_path / "docs.csv", "w", newline="") as f:
        csv.writer(f).writerows([["text", "label"], [document, "long"], ["short", "brief"]])
    ds = load_dataset(tmp_path / "docs.csv")
    assert ds[0] == {"text": document, "label": 1} and ds[1] == {"text": "short", "label": 0}


def test_large_files_show_progress_while_they_are_indexed_and_checked(tmp_path, monkeypatch, capsys):
    import pela.data.lines
    import pela.data.records

    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(30)))
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    load_dataset(tmp_path / "r.jsonl", progress=True)
    assert capsys.readouterr().err == ""  # small files: no bars
    monkeypatch.setattr(pela.data.lines, "PROGRESS_BYTES", 0)
    monkeypatch.setattr(pela.data.records, "PROGRESS_RECORDS", 0)
    load_dataset(tmp_path / "r.jsonl", progress=True)
    err = capsys.readouterr().err
    assert "indexing r.jsonl" in err and "checking r.jsonl" in err and "30/30" in err
    load_dataset(tmp_path / "t.txt", progress=True)
    assert "indexing t.txt" in capsys.readouterr().err
    load_dataset(tmp_path / "r.jsonl")
    assert capsys.readouterr().err == ""  # the library is quiet unless asked


def test_the_text_is_the_only_column_of_text_unless_named(tmp_path):
    """SST-2 on the hub: sentence, label, idx. Without --text-field pela reads text, else the one column
    of text there is; two (a sentence pair, or title and content) must be named."""
    _write_parquet(tmp_path / "sst2.parquet", {"sentence": ["good film", "dull"], "label": [1, 0], "idx": [0, 1]}, ["negative", "positive"])
    ds = load_dataset(tmp_path / "sst2.parquet")
    assert ds.text_fields == ("sentence",) and ds[0] == {"text": "good film", "label": 1}
    with pytest.raises(PelaError, match="record 1 has no 'text' field"):
        load_dataset(tmp_path / "sst2.parquet", text_field="text")  # named: exactly that
    (tmp_path / "ids.csv").write_text("id,review,label\n17,nice,pos\n18,bad,neg\n")  # a numeric id is no text
    assert load_dataset(tmp_path / "ids.csv")[0] == {"text": "nice", "label": 1}
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"question": "why?", "sentence": "because.", "label": "yes"}) + "\n")
    with pytest.raises(PelaError, match=r"no 'text' field \(its fields: question, sentence, label\); name the text with "
                                        r"text_field=NAME \(two, comma-separated, for sentence pairs\)"):
        load_dataset(tmp_path / "pairs.jsonl")
    assert load_dataset(tmp_path / "pairs.jsonl", text_field="question,sentence")[0]["text_pair"] == "because."
    (tmp_path / "both.jsonl").write_text(json.dumps({"title": "t", "text": "body", "label": "x"}) + "\n")
    assert load_dataset(tmp_path / "both.jsonl")[0]["text"] == "body"  # text, where there is one


def test_the_class_is_label_or_a_datasets_only_class_label_column(tmp_path):
    """clinc_oos on the hub: text and intent, a ClassLabel. Without --label-field pela reads label (or
    another usual name for the class), else the dataset's only ClassLabel column; a plain column is not guessed."""
    _write_parquet(tmp_path / "clinc.parquet", {"text": ["book a flight", "hi"], "intent": [1, 0]}, ["greet", "travel"], label="intent")
    ds = load_dataset(tmp_path / "clinc.parquet")
    assert ds.label_field == "intent" and ds.classes == ["greet", "travel"] and ds[0] == {"text": "book a flight", "label": 1}
    assert load_dataset(tmp_path / "clinc.parquet", label_field="label").classes is None  # named: exactly that
    _write_parquet(tmp_path / "plain.parquet", {"text": ["a", "b"], "intent": [1, 0]})  # no ClassLabel: no labels
    assert load_dataset(tmp_path / "plain.parquet").classes is None
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "a", "intent": "x"}) + "\n")
    assert load_dataset(tmp_path / "c.jsonl").classes is None
    # the class's usual names: IMDB's CSV (review, sentiment) needs neither flag; label comes first; a list is no class
    (tmp_path / "imdb.csv").write_text('review,sentiment\n"Loved it, truly.",positive\nBoring.,negative\n')
    ds = load_dataset(tmp_path / "imdb.csv")
    assert ds.label_field == "sentiment" and ds.text_fields == ("review",) and ds[0] == {"text": "Loved it, truly.", "label": 1}
    (tmp_path / "news.jsonl").write_text(json.dumps({"headline": "Rates rise", "category": "BUSINESS", "label": None}) + "\n")
    assert load_dataset(tmp_path / "news.jsonl", text_field="headline").label_field == "label"  # present, if unset here
    (tmp_path / "mnli.tsv").write_text("index\tsentence1\tsentence2\tlabel1\tgold_label\n0\tA man sleeps.\tA man rests.\tneutral\tentailment\n")
    ds = load_dataset(tmp_path / "mnli.tsv", text_field="sentence1,sentence2")
    assert ds.label_field == "gold_label" and ds[0]["label"] == 0 and ds.classes == ["entailment"]
    (tmp_path / "tags.jsonl").write_text(json.dumps({"text": "a", "labels": ["x", "y"], "class": "z"}) + "\n")
    assert load_dataset(tmp_path / "tags.jsonl").label_field == "class"
    _write_parquet(tmp_path / "both.parquet", {"text": ["a", "b"], "category": ["u", "v"], "intent": [1, 0]}, ["greet", "travel"], label="intent")
    assert load_dataset(tmp_path / "both.parquet").label_field == "category"  # a usual name before a ClassLabel of another name


def test_csv_and_tsv_files_without_a_header_row(tmp_path):
    """AG News' and Yelp's CSV files and CoLA's TSV files have no header: their first row holds a number,
    so it is a record, and the columns are named by position; the class is the one column of whole
    numbers. pandas' header of positional names (",0,1") is still a header."""
    (tmp_path / "ag.csv").write_text('"3","Wall St. Bears","Short-sellers, again."\n"4","Carlyle","Private firm"\n"3","Oil","Up"\n')
    with pytest.raises(PelaError, match=r"ag.csv has no header row, so its columns are named by position "
                                        r"\(0: '3', 1: 'Wall St. Bears', 2: 'Short-sellers, again.'\); name the text with text_field"):
        load_dataset(tmp_path / "ag.csv")
    ds = load_dataset(tmp_path / "ag.csv", text_field="1,2")
    assert len(ds) == 3 and ds.label_field == "0" and ds.classes == ["3", "4"]
    assert ds[0] == {"text": "Wall St. Bears", "text_pair": "Short-sellers, again.", "label": 0} and ds[1]["label"] == 1
    assert list(ds.rows) == [ds.rows[i] for i in range(3)]  # read in order as by index: the first row is a record
    assert describe(ds)["kind"] == "CSV, no header row (columns named by position)"
    (tmp_path / "yelp.csv").write_text('"1","Awful service."\n"2","Great tacos, friendly staff."\n')
    ds = load_dataset(tmp_path / "yelp.csv")  # one column of text, one of whole numbers: nothing to name
    assert ds[1] == {"text": "Great tacos, friendly staff.", "label": 1} and ds.text_fields == ("1",)
    assert load_dataset(tmp_path / "yelp.csv", label_field="label").classes is None  # named: exactly that
    (tmp_path / "cola.tsv").write_text("gj04\t1\t\tOur friends won't buy this.\ngj04\t0\t*\tThey drank the pub.\n")
    ds = load_dataset(tmp_path / "cola.tsv", text_field="3")
    assert len(ds) == 2 and ds.label_field == "1" and ds[1] == {"text": "They drank the pub.", "label": 0}
    assert list(ds.rows)[0]["3"] == "Our friends won't buy this."
    (tmp_path / "pandas.csv").write_text(",0,1\n0,good,pos\n1,bad,neg\n")  # DataFrame.to_csv of unnamed columns
    ds = load_dataset(tmp_path / "pandas.csv", text_field="0", label_field="1")
    assert len(ds) == 2 and ds[0] == {"text": "good", "label": 1} and not ds.rows.headerless
    (tmp_path / "named.csv").write_text("text,label\n5,a\n")  # a header names; numbers below it are data
    assert load_dataset(tmp_path / "named.csv")[0] == {"text": "5", "label": 0}
    shards = tmp_path / "shards"  # a folder of headerless shards, read one after another
    shards.mkdir()
    for i in range(2):
        (shards / f"train-{i}.csv").write_text(f'"{i}","text {i}"\n')
    ds = load_dataset(shards)
    assert ds.label_field == "0" and [ds[i]["text"] for i in range(2)] == ["text 0", "text 1"]


def test_large_parquet_is_memory_mapped_from_an_arrow_copy_in_the_cache(tmp_path, monkeypatch):
    """A Parquet file too large to hold decompressed is converted once into an Arrow file in pela's
    cache (PELA_CACHE) and memory-mapped: its rows take no process memory. A cache that cannot be
    written costs memory, not the run."""
    import pyarrow as pa

    import pela.data.tables

    monkeypatch.setattr(pela.data.tables, "PARQUET_CACHE_BYTES", 0)  # every file is large
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "cache"))
    texts = [f"example number {i} " * 4 for i in range(20_000)]
    _write_parquet(tmp_path / "d" / "train-00000-of-00001.parquet", {"text": texts, "label": [i % 3 for i in range(20_000)]}, ["x", "y", "z"])
    before = pa.total_allocated_bytes()
    ds = load_dataset(tmp_path / "d")
    assert pa.total_allocated_bytes() - before < 100_000  # the 1.4 MB of text stays in the mapped file
    copies = list((tmp_path / "cache" / "arrow").glob("train-00000-of-00001-*.arrow"))
    assert len(copies) == 1 and ds.classes == ["x", "y", "z"] and ds[4] == {"text": texts[4], "label": 1} and len(ds) == 20_000
    written = copies[0].stat().st_mtime_ns
    assert load_dataset(tmp_path / "d")[7]["text"] == texts[7] and copies[0].stat().st_mtime_ns == written  # reused
    other = tmp_path / "e" / "train-00000-of-00001.parquet"  # another file of the same name keeps its own copy
    _write_parquet(other, {"text": ["other"], "label": [2]}, ["x", "y", "z"])
    assert load_dataset(other)[0]["text"] == "other"
    _write_parquet(tmp_path / "d" / "train-00000-of-00001.parquet", {"text": ["changed", "file"], "label": [0, 1]}, ["x", "y"])
    assert load_dataset(tmp_path / "d")[0]["text"] == "changed"  # a new version of the file: a new copy,
    assert not copies[0].exists() and len(list((tmp_path / "cache" / "arrow").iterdir())) == 2  # which replaces the old one
    assert ds[4] == {"text": texts[4], "label": 1}  # a dataset already open keeps reading the old version
    assert load_dataset(other)[0]["text"] == "other"
    (tmp_path / "not_a_folder").write_text("")
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "not_a_folder"))
    with pytest.warns(UserWarning, match="reading .* into memory: could not write its copy"):
        assert load_dataset(tmp_path / "d")[1] == {"text": "file", "label": 1}


def test_large_gzip_files_are_decompressed_once_into_the_cache(tmp_path, monkeypatch):
    """A large .gz file is decompressed into pela's cache and read from there by byte offsets, not
    held in memory; errors still name the file the user gave."""
    import pela.data.lines

    monkeypatch.setattr(pela.data.lines, "GZIP_CACHE_BYTES", 0)  # every file is large
    monkeypatch.setenv("PELA_CACHE", str(tmp_path / "cache"))
    rows = "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(50))
    (tmp_path / "train.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    (tmp_path / "corpus.txt.gz").write_bytes(gzip.compress(b"first line\n\nsecond line\n"))
    ds = load_dataset(tmp_path / "train.jsonl.gz")
    text = load_dataset(tmp_path / "corpus.txt.gz")
    copies = sorted(p.name for p in (tmp_path / "cache" / "gunzip").iterdir())
    assert len(copies) == 2 and copies[0].startswith("corpus.txt-") and copies[1].startswith("train.jsonl-")
    assert ds.rows._data is None and len(ds) == 50 and ds[3] == {"text": "t3", "label": 1} and text[1] == {"text": "second line"}
    assert pickle.loads(pickle.dumps(ds))[49] == ds[49]
    (tmp_path / "train.jsonl.gz").write_bytes(gzip.compress(rows.replace('"t', '"new ').encode()))  # a new version
    assert load_dataset(tmp_path / "train.jsonl.gz")[3]["text"] == "new 3" and ds[4]["text"] == "t4"  # ds still reads the old
    assert sorted(p.name for p in (tmp_path / "cache" / "gunzip").iterdir())[0] == copies[0]  # corpus.txt's copy stays
    assert len(list((tmp_path / "cache" / "gunzip").iterdir())) == 2  # the new copy replaced the old one
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n{oops\n'))
    with pytest.raises(PelaError, match=r"bad.jsonl.gz:2 is not valid JSON"):
        load_dataset(tmp_path / "bad.jsonl.gz")
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(rows.encode())[:-12])
    with pytest.raises(PelaError, match="cut.jsonl.gz is not a readable gzip file"):
        load_dataset(tmp_path / "cut.jsonl.gz")
    assert not [p for p in (tmp_path / "cache" / "gunzip").iterdir() if ".tmp" in p.name]  # nothing half-written left


def test_encoded_images_are_found_under_any_name(tmp_path):
    """webdataset converted to Parquet keeps its images as raw bytes under jpg/png; other datasets
    name their image column photo or pixels: an encoded image is recognised by its first bytes."""
    images = [_png(c) for c in ("red", "green", "blue")]
    _write_parquet(tmp_path / "wds.parquet", {"png": images, "label": [2, 0, 1]}, ["a", "b", "c"])
    ds = load_dataset(tmp_path / "wds.parquet")
    assert ds.image_field == "png" and ds[0]["label"] == 2 and ds[0]["image"].getpixel((0, 0)) == (255, 0, 0)
    _write_parquet(tmp_path / "photo.parquet", {"photo": [{"bytes": b, "path": None} for b in images], "label": [0, 1, 1]})
    assert load_dataset(tmp_path / "photo.parquet")[2]["image"].getpixel((0, 0)) == (0, 0, 255)
    _write_parquet(tmp_path / "blob.parquet", {"text": ["x", "y", "z"], "blob": [b"\x00\x01", b"", b"\x02"]})
    assert load_dataset(tmp_path / "blob.parquet")[0] == {"text": "x"}  # bytes that are no image are not one


def test_a_folder_of_record_shards(tmp_path):
    """C4 as downloaded: en/c4-train.0000N-of-01024.json.gz and c4-validation.*, JSON lines each; a
    folder of CSV shards in split folders; the split is picked by name, as for Parquet shards."""
    from pela.data.load import describe

    en = tmp_path / "c4" / "en"
    en.mkdir(parents=True)
    for split, n in (("train", 3), ("validation", 1)):
        for k in range(n):
            rows = "".join(json.dumps({"text": f"{split} {k} {i}", "timestamp": "2019", "url": "http://x/a.jpg"}) + "\n" for i in range(4))
            (en / f"c4-{split}.{k:05d}-of-01024.json.gz").write_bytes(gzip.compress(rows.encode()))
    train = load_dataset(tmp_path / "c4")
    assert len(train) == 12 and train[0] == {"text": "train 0 0"} and train[11] == {"text": "train 2 3"}
    assert [row["text"] for row in train.rows] == [train[i]["text"] for i in range(12)]
    assert describe(train)["kind"] == "JSON lines, 3 files"
    test = load_dataset(tmp_path / "c4", split="test")
    assert len(test) == 4 and test[3] == {"text": "validation 0 3"}
    for split, labels in (("train", "abab"), ("test", "ba")):
        (tmp_path / "csv" / split).mkdir(parents=True)
        for k in range(2):
            (tmp_path / "csv" / split / f"part-{k}.csv").write_text("text,label\n" + "".join(f"{split}{k}{i},{y}\n" for i, y in enumerate(labels)))
    train = load_dataset(tmp_path / "csv")
    assert len(train) == 8 and train.classes == ["a", "b"] and train[5] == {"text": "train11", "label": 1}
    assert load_dataset(tmp_path / "csv", split="test", classes=train.classes)[2] == {"text": "test10", "label": 1}
    (tmp_path / "csv" / "train" / "extra.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(PelaError, match=r"holds records in several formats \(.csv, .jsonl\)"):
        load_dataset(tmp_path / "csv")
    # an image folder with an annotations file beside its images stays an image folder
    (tmp_path / "img" / "cat").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "cat" / "0.png")
    (tmp_path / "img" / "annotations.json").write_text("[]")
    assert load_dataset(tmp_path / "img").classes == ["cat"]
