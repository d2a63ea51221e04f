# One-command bootstrap. `make run` starts the whole system; `make test` runs the whole suite.
# Both work on a fresh machine that has only Python 3.11 and the package registries.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
FRONTEND := web_console/frontend

# Debian packages the tests drive as real peers (installed when root, otherwise checked).
TEST_DEBS := chromium fonts-wqy-microhei ffmpeg tshark sip-tester baresip baresip-ffmpeg iproute2
# command -> Debian package, for the non-root check
TEST_CMDS := chromium:chromium ffmpeg:ffmpeg tshark:tshark sipp:sip-tester baresip:baresip ip:iproute2

.PHONY: run test venv frontend system-deps lint clean bench

run: venv frontend
	$(VENV)/bin/commandcenter up

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

frontend: $(FRONTEND)/node_modules/.installed

$(FRONTEND)/node_modules/.installed: $(FRONTEND)/package.json
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq nodejs npm; } \
	  || { echo "npm is missing: install Node.js/npm (Debian: nodejs npm)"; exit 1; }
	cd $(FRONTEND) && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; \
	  else npm install --no-audit --no-fund --silent; fi
	touch $@

system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "Installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else \
	  missing=""; for pair in $(TEST_CMDS); do c=$${pair%%:*}; p=$${pair##*:}; \
	    command -v $$c >/dev/null || missing="$$missing $$p"; done; \
	  fc-list 2>/dev/null | grep -qi wqy || missing="$$missing fonts-wqy-microhei"; \
	  if [ -n "$$missing" ]; then \
	    echo "make test needs these Debian packages (run as root to install them):$$missing"; exit 1; \
	  fi; \
	fi

test: venv frontend system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

bench: venv frontend system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(FRONTEND)/node_modules .pytest_cache
