# ctd-book: two commands do everything.
#   make book   virtual environment, data, every notebook at the CPU scale, strict HTML build
#   make test   linters and type checker, unit/property tests, notebooks at the smallest scale, strict book
#               build, browser check, PDF check
#   make pdf    the whole book as one PDF (_build/pdf/ctd-book.pdf), offline, from the executed notebooks
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ctd-installed

.PHONY: book test setup data notebooks html pdf browser pdftools lint clean gpu-wheels

book: setup data notebooks html

test: setup data browser pdftools lint
	$(BIN)/python -m pytest

# The linters and the type checker (configured in pyproject.toml) are part of the test command.
lint: setup
	$(BIN)/ruff check ctd_lib notebooks tests scripts benchmarks
	$(BIN)/mypy

setup: $(STAMP)

# Re-install when the dependency list changes; the stamp records a completed install.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed; set PYTHON=python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	touch $@

data: setup
	$(BIN)/python -c "from ctd_lib.data import fetch_mnist10k; print('mnist10k:', fetch_mnist10k())"

notebooks: setup
	$(BIN)/python scripts/run_notebooks.py --scale cpu

html: setup
	$(BIN)/jupyter-book build --all -W -n --keep-going .
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# Like html, from the notebooks `make notebooks` executed: one HTML page (singlehtml) printed by headless
# Chromium, nothing downloaded; the math is checked in the PDF's text where pdftotext is installed.
pdf: setup browser
	$(BIN)/python scripts/build_pdf.py

# The browser check needs Debian's chromium; install it where we may (root), else say how.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else \
	    echo "The browser check needs chromium on PATH: sudo apt-get install chromium (Debian/Ubuntu)"; exit 1; \
	  fi; }
	@chromium --version

# The PDF check reads the PDF back with poppler-utils (pdftotext, pdfinfo, pdfimages); the same way.
pdftools:
	@command -v pdftotext >/dev/null 2>&1 && command -v pdfimages >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null); \
	  else \
	    echo "The PDF check needs pdftotext on PATH: sudo apt-get install poppler-utils (Debian/Ubuntu)"; exit 1; \
	  fi; }
	@pdftotext -v 2>&1 | head -n 1

# Wheels for scripts/gpu_run.sh on a GPU machine without a network (Python GPU_PY, manylinux x86_64): POT,
# scikit-bio and what scikit-bio needs beyond a usual PyTorch image, and the embedded digits.
GPU_PY ?= 3.12
gpu-wheels: data
	mkdir -p wheels
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PY) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform manylinux1_x86_64 -d wheels "POT==0.9.7.post1" "scikit-bio==0.7.4" "biom-format==2.1.18" \
	  "decorator==5.3.1" "array-api-compat==1.16.0"
	$(BIN)/python -c "from ctd_lib.data import fetch_mnist10k; import shutil; shutil.copy(fetch_mnist10k(), 'wheels/')"
	@ls -la wheels

clean:
	rm -rf _build notebooks/*.ipynb results/cpu results/smoke test-artifacts
