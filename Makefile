# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-tools demo test test-slow

# torch first and pinned: the CPU build 2.13.0 lies on the machine; an unpinned
# resolve would fetch a CUDA build of several GB.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'

# Icarus Verilog is a Debian package (cocotb's second simulator).
install-tools:
	@command -v iverilog >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iverilog >/dev/null; }

demo: install
	rep-accel demo

test: install install-tools
	$(PYTHON) -m pytest -n 2

test-slow: install install-tools
	$(PYTHON) -m pytest -n 2 -m slow
