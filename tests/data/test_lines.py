"""Plain text: one example per line, or per record in fortune's %-separated files."""



from pela.data.load import load_dataset


def test_a_text_file_is_one_example_per_non_empty_line(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    ds = load_dataset(tmp_path / "a.txt")
    assert len(ds) == 2 and ds[1] == {"text": "second line"}


def test_fortune_format(tmp_path):
    """Records separated by lines holding only %, as fortune's files are: one example per record."""
    (tmp_path / "cookies").write_text("first,\n  on two lines\n%\nsecond\n%\n\n%\n% not a separator\n100%\n%\n")
    ds = load_dataset(tmp_path / "cookies")
    assert [ds[i]["text"] for i in range(len(ds))] == ["first,\n  on two lines", "second", "% not a separator\n100%"]
    assert ds.lengths == [len("first,\n  on two lines\n"), len("second\n"), len("% not a separator\n100%\n")]
    (tmp_path / "percent.txt").write_text("a\n%\nb c\n")  # one lone % line: an ordinary text, one example per line
    assert [load_dataset(tmp_path / "percent.txt")[i]["text"] for i in range(3)] == ["a", "%", "b c"]
    (tmp_path / "corpus.txt").write_text("%\n" + "".join(f"line {i}\n" for i in range(200)) + "%\n")  # 2 stray % lines in 202
    assert len(load_dataset(tmp_path / "corpus.txt")) == 202
