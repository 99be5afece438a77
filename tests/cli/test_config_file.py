"""`--config`: every option of a command from a TOML or YAML file or a KEY=VALUE pair, the flags
on the command line over the file, and one clear line for each mistake."""

import json
from pathlib import Path

import pytest
from conftest import TIMM_VIT, run_cli
from typer.main import get_command

import pela
from pela.cli.app import app
from pela.cli.config_file import coerce, read_config
from pela.errors import PelaError

MAX_FLAGS, MAX_FLAGS_PER_COMMAND = 90, 15


@pytest.fixture
def vit_dir(tmp_path):
    model = pela.load("timm:vit_tiny_patch16_224", random_init=True, **TIMM_VIT)
    return pela.save_pretrained(model, tmp_path / "dense")


def compressed(capsys, vit_dir, out, *args):
    code, stdout, err = run_cli(capsys, "compress", vit_dir, "--out", out, "--json", *args)
    assert code == 0, err
    return json.loads(stdout)["config"]


def test_a_file_sets_settings_and_flags_and_a_given_flag_wins(vit_dir, tmp_path, capsys):
    toml = tmp_path / "pela.toml"
    toml.write_text('[compress]\nalign = 1\nratio = 3.0\n"init" = "svd"\n\n[distill]\ngamma = 0.1\n')
    config = compressed(capsys, vit_dir, tmp_path / "a", "--config", toml)
    assert (config["align"], config["ratio"], config["init"]) == (1, 3.0, "svd")
    config = compressed(capsys, vit_dir, tmp_path / "b", "--config", toml, "--ratio", 4)
    assert (config["align"], config["ratio"]) == (1, 4.0)  # the flag on the command line wins


def test_yaml_and_key_value_pairs_later_ones_winning(vit_dir, tmp_path, capsys):
    yaml = tmp_path / "pela.yaml"
    yaml.write_text("compress:\n  align: 1\n  ratio: 3\n")
    config = compressed(capsys, vit_dir, tmp_path / "a", "--config", yaml, "--config", "ratio=4")
    assert (config["align"], config["ratio"]) == (1, 4.0)
    config = compressed(capsys, vit_dir, tmp_path / "b", "--config", "align=4", "--config", "align=2")
    assert config["align"] == 2


@pytest.mark.parametrize("content, suffix, says", [
    ("[compress]\naling = 1\n", ".toml", "pela compress has no option 'aling'; did you mean align?"),
    ("[distill]\ngamma = 1\n", ".toml", "has no [compress] table (its tables: distill)"),
    ("[compress]\nalign = 'eight'\n", ".toml", "align must be int, got 'eight'"),
    ("[compress]\nalign = \n", ".toml", "is not valid TOML"),
    ("compress: [1, 2\n", ".yaml", "is not valid YAML"),
    ("compress:\n  - 1\n", ".yaml", "[compress] must be a table of options"),
    ("align=1\n", ".ini", "a .toml, .yaml or .yml file, got .ini"),
])
def test_a_bad_file_is_one_error_line(vit_dir, tmp_path, capsys, content, suffix, says):
    path = tmp_path / f"c{suffix}"
    path.write_text(content)
    code, _, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "o", "--config", path)
    assert code == 2 and err.startswith("error: ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_missing_file_and_a_bad_value(vit_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "o", "--config", tmp_path / "none.toml")
    assert code == 2 and "no such file" in err, err
    code, _, err = run_cli(capsys, "compress", vit_dir, "--out", tmp_path / "o", "--config", "random_init=maybe")
    assert code == 2 and "random_init must be bool, got 'maybe'" in err, err


def test_values_take_the_options_types():
    assert coerce("ratio", 2, float) == 2.0 and isinstance(coerce("ratio", 2, float), float)
    assert coerce("text_field", 0, str) == "0"  # a headerless CSV's column 0
    assert coerce("checkpoint", "w.safetensors", Path | None) == Path("w.safetensors")
    assert coerce("exclude", "head", list[str] | None) == ["head"]
    assert coerce("patience", "none", int | None) is None
    for value, hint in ((True, int), ("1", int), (1.5, int), ([1], str)):
        with pytest.raises(PelaError, match="must be"):
            coerce("x", value, hint)


def test_key_value_pairs_read_as_toml_values(tmp_path):
    read = read_config(["seed=3", "lr=1e-4", "sequential=true", "text_field=title", "temperature=none",
                        "exclude=['head', 'pooler']", "--grad-accum=2"], "distill")
    assert read == {"seed": 3, "lr": 1e-4, "sequential": True, "text_field": "title", "temperature": None,
                    "exclude": ["head", "pooler"], "grad_accum": 2}


def test_help_lists_what_only_the_file_sets(capsys):
    code, out, _ = run_cli(capsys, "distill", "--help")
    assert code == 0 and "--config" in out and "--gamma" not in out
    assert "Set with --config (a file's [distill] table" in out and "gamma (default 0.0): weight of weight-perturbation" in out


def test_a_person_can_hold_the_cli():
    """The figure of issue #35: at most 15 flags per command and 90 in all."""
    commands = get_command(app).commands
    flags = {name: [p for p in c.params if p.param_type_name == "option" and p.name != "help"]
             for name, c in commands.items()}
    assert all(len(f) <= MAX_FLAGS_PER_COMMAND for f in flags.values()), {n: len(f) for n, f in flags.items()}
    assert sum(map(len, flags.values())) <= MAX_FLAGS
