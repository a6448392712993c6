# Two commands do all set-up on a fresh machine:
#   make run    creates/reuses .venv, installs the project, runs `python -m agent.run env=reacher`
#   make test   creates/reuses .venv, installs the project with test extras, runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and alone, pinned, so pip never swaps in a multi-GB CUDA build on a
# CPU machine; set TORCH_SPEC= (empty) to keep a torch you already installed in the venv.
TORCH_SPEC ?= torch==2.13.0
ARGS ?= env=reacher
# pytest-xdist processes for `make test`, one torch thread each (tests/conftest.py); 0 runs in this process
TEST_WORKERS ?= 2

.PHONY: venv run test collect clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

run: venv
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python -m agent.run $(ARGS)

collect: venv
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python -m agent.collect $(ARGS)

test: venv
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
