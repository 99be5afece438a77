"""``--config``: any option of a command from a TOML or YAML file, or one ``KEY=VALUE`` pair.

A command's flags are the options most runs set; the knobs few people touch are *settings* (a
parameter whose default is `setting`), reachable only here, so ``--help`` stays short. A file sets
a command's options in the table named after it (``[distill]``, ``[compress]``, ...), keys spelled
as the flag (``grad-accum``) or as the Python name (``grad_accum``), so one file can hold a whole
pipeline. ``--config`` repeats; a later one wins over an earlier one, and a flag given on the
command line wins over them all.
"""

from __future__ import annotations

import difflib
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union, get_args, get_origin

from pela.errors import PelaError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONFIG_HELP = (
    "set any option, the ones not listed here too (--help's last section): a TOML or YAML file "
    "whose [COMMAND] table holds them, or one KEY=VALUE (e.g. gamma=0.1); repeatable"
)
NULLS = ("none", "null")


@dataclass(frozen=True)
class Setting:
    """An option only ``--config`` sets: its default and what it does."""

    default: Any
    help: str


def setting(default: Any, help: str) -> Any:
    """A command parameter set only through ``--config`` (typed as the value, for the reader)."""
    return Setting(default, help)


def read_config(sources: list[str], command: str) -> dict[str, Any]:
    """The options ``--config SOURCE ...`` sets for ``command``, later sources over earlier ones."""
    values: dict[str, Any] = {}
    for source in sources:
        values.update(_read_one(source, command))
    return values


def _read_one(source: str, command: str) -> dict[str, Any]:
    path = Path(source)
    if "=" in source and not path.exists():
        key, _, value = source.partition("=")
        return {_name(key): _parse_value(value.strip())}
    if not path.is_file():
        raise PelaError(f"--config {source}: no such file (give a TOML or YAML file, or KEY=VALUE)")
    document = _parse_file(path)
    table = document.get(command)
    if table is None:
        tables = ", ".join(sorted(k for k, v in document.items() if isinstance(v, dict))) or "none"
        raise PelaError(f"--config {source} has no [{command}] table (its tables: {tables})")
    if not isinstance(table, dict):
        raise PelaError(f"--config {source}: [{command}] must be a table of options, got {table!r}")
    return {_name(key): value for key, value in table.items()}


def _parse_file(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        document = _read(path, "TOML", tomllib.loads, tomllib.TOMLDecodeError)
    elif suffix in (".yaml", ".yml"):
        import yaml

        document = _read(path, "YAML", yaml.safe_load, yaml.YAMLError)
    else:
        got = suffix or "no suffix"
        raise PelaError(f"--config {path}: a .toml, .yaml or .yml file, got {got}")
    if not isinstance(document, dict):
        raise PelaError(f"--config {path}: expected tables of options, got "
                        f"{type(document).__name__}")
    return document


def _read(path: Path, kind: str, parse: Callable[[str], Any], error: type[Exception]) -> Any:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (error, UnicodeDecodeError) as e:
        said = " ".join(str(e).split())
        raise PelaError(f"--config {path} is not valid {kind}: {said}") from None


def _name(key: str) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def _parse_value(text: str) -> Any:
    """``KEY=VALUE``'s value as TOML reads it (numbers, true/false, "strings", [lists]); none or
    null is None; anything else is the text itself (``text_field=title``)."""
    if text.lower() in NULLS:
        return None
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def check_names(values: dict[str, Any], known: list[str], command: str) -> None:
    """Refuse a key that is none of ``command``'s options, naming the closest one."""
    for name in values:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (its options: {', '.join(known)})"
            raise PelaError(f"--config: pela {command} has no option {name!r}{hint}")


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the option's type ``hint`` takes it, or one clear error."""
    if get_origin(hint) in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in NULLS):
            return None
        hint = options[0] if len(options) == 1 else Any
    if get_origin(hint) is list:
        items = value if isinstance(value, list) else [value]
        return [coerce(name, item, get_args(hint)[0]) for item in items]
    converted = _scalar(value, hint)
    if converted is _WRONG:
        kind = "a path" if hint is Path else getattr(hint, "__name__", str(hint))
        raise PelaError(f"--config: {name} must be {kind}, got {value!r}")
    return converted


_WRONG = object()


def _scalar(value: Any, hint: Any) -> Any:
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _WRONG
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if number else _WRONG
    if hint is str:  # a number too, as written: a headerless CSV's column 0, --factor-lr 1
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return str(value) if isinstance(value, str) or number else _WRONG
    if hint is Path:
        return Path(value) if isinstance(value, str) else _WRONG
    return value


def settings_help(settings: dict[str, Setting], command: str) -> str:
    """The last section of ``--help``: the options only ``--config`` sets."""
    # "\[": rich, which draws --help, would take [command] for a style and drop it
    lines = [f"Set with --config (a file's \\[{command}] table, or KEY=VALUE):"]
    for name, s in settings.items():
        default = "" if s.default is None else f" (default {s.default})"
        lines.append(f"{name}{default}: {s.help}")
    return "\n\n".join(lines)
