# Sourced by core.sh and study.sh: make the carried packages importable (see README.md here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ ! -d .site/transformers ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl
  tar xf .xfa/minilm_small.tar -C .site
  python3 -c "import tarfile; tarfile.open('.xfa/wordnet.tar.xz').extractall('/usr/share/wordnet', filter='data')"
fi
export PYTHONPATH=$PWD/src:$PWD/.site PYTHONUNBUFFERED=1 PELA="python3 -m pela"
OUT=${OUT:-$PWD/runs/device_out}
mkdir -p "$OUT"
