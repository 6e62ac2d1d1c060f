# Developer entry points. `make demo` runs extpack on the bundled demo layer (no AWS account
# needed); `make test` installs what the tests need and runs them.
PYTHON ?= python3
DEMO := build/demo

.PHONY: install install-test demo test bench clean

install:
	$(PYTHON) -m pip install -q -e .

install-test:
	bash .ci/install.sh
	$(PYTHON) -m pip install -q -e '.[test]'

demo: install
	mkdir -p $(DEMO)
	extpack fetch fixtures/demo-extension.zip --stage-dir $(DEMO)/.extpack --lock $(DEMO)/extpack.lock
	extpack render --stage-dir $(DEMO)/.extpack --lock $(DEMO)/extpack.lock --output $(DEMO)/Dockerfile
	extpack ls --stage-dir $(DEMO)/.extpack
	@echo "--- $(DEMO)/Dockerfile"; cat $(DEMO)/Dockerfile

test: install-test
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf build .pytest_cache
