"""CSV and TSV tables, GLUE's tab-separated files included."""



from pela.data.load import load_dataset


def test_csv_and_glue_style_tsv(tmp_path):
    (tmp_path / "c.csv").write_text("text,label\nhello,a\nworld,b\n")
    assert load_dataset(tmp_path / "c.csv")[0] == {"text": "hello", "label": 0}
    # GLUE's tab-separated files: a quote is text, not quoting; integer classes in numeric order
    (tmp_path / "d.tsv").write_text('sentence\tlabel\nit \'s " fine\t10\nnot, at all\t9\nok\t1\n')
    ds = load_dataset(tmp_path / "d.tsv", text_field="sentence")
    assert ds.classes == ["1", "9", "10"] and ds[0] == {"text": 'it \'s " fine', "label": 2} and ds[1]["text"] == "not, at all"
