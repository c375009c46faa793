# Each target sets up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean system-packages

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, so the torch requirement does not pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q "torch>=2.3,<2.15"
	# Everything else held to that torch: timm (nnU-Net's networks need it) would otherwise pull a
	# newer torchvision and, with it, a multi-GB CUDA torch.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(BIN)/python -m pip install -q -c $(VENV)/torch-pin.txt -e ".[dev,nnunet]"
	# PyPI's torchvision is a CUDA build that cannot load beside the CPU torch; nothing here uses it.
	$(BIN)/python -c "import torchvision" 2>/dev/null || $(BIN)/python -m pip uninstall -q -y torchvision
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/radlens --demo

# Orthanc and its DICOMweb plugin (the PACS tests) and dicom3tools (dciodvfy, the conformance test):
# installed when missing, as root on Debian; elsewhere, or when apt fails, those tests skip and say why.
# policy-rc.d keeps apt from starting Orthanc as a system service (the tests start their own).
SYSTEM_PACKAGES := orthanc orthanc-dicomweb dicom3tools

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then \
	  echo "installing $$(echo $$missing) for the PACS and conformance tests"; \
	  policy=; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod +x /usr/sbin/policy-rc.d; policy=1; }; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } \
	    >/dev/null 2>&1 || echo "could not install $$(echo $$missing): those tests will skip"; \
	  [ -z "$$policy" ] || rm -f /usr/sbin/policy-rc.d; \
	fi

test: $(STAMP) system-packages
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
