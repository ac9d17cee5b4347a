# incident.response: development, lab and CI entry points.
# `make help` lists the targets; docs/development.md explains them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
# Tools (ansible-*, molecule, pytest) come from the venv; molecule and
# ansible-lint also run ansible-* by name.
export PATH := $(BIN):$(PATH)

# Where the lab keeps its state; the lab playbook writes $(LAB_DIR)/lab.env.
LAB_DIR ?= $(or $(INCIDENT_LAB_DIR),/var/lib/incident-response-lab)
export INCIDENT_LAB_DIR := $(LAB_DIR)
export LAB_DIR

PYTHON_VERSION := 3.11
COLLECTION_LINK := $(ROOT)/build/collections/ansible_collections/incident/response
SANITY_ROOT := $(ROOT)/build/sanity/ansible_collections/incident/response

# Extra arguments, e.g. make sanity SANITY_ARGS='--test pep8'
SANITY_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers of `make integration` (--dist loadgroup: tests that share a lab object run on one worker,
# one after the other; tests/integration/conftest.py). 0 or 1: serial, without xdist. Two by default: on 2 cores
# the serial suite took 70.6 min, two workers 55.9 min (2026-12-02), and CI has 90 min for every stage.
INTEGRATION_WORKERS ?= 2
INTEGRATION_XDIST := $(if $(filter-out 0 1,$(INTEGRATION_WORKERS)),-n $(INTEGRATION_WORKERS) --dist loadgroup)
LINT_ARGS ?=
MOLECULE_ARGS ?=

# Stages of `make test`, in order; the first failure stops the run.
TEST_STAGES := sanity lint unit lab-up integration molecule

RULE := ========================================================================

# $(call banner,TEXT)
banner = printf '\n%s\n== %s\n%s\n' "$(RULE)" "$(1)" '$(RULE)'

# $(call pytest,PATHS): pytest, where "no tests collected" (exit 5) is a failure.
define pytest
rc=0; pytest $(1) $(PYTEST_ARGS) || rc=$$?; \
if [ "$$rc" -eq 5 ]; then \
  echo "ERROR: pytest collected no tests from $(1) (exit 5): that is a failure here" >&2; exit 1; \
fi; \
exit "$$rc"
endef

# $(call need_lab_env): fail unless the lab has written its environment file.
define need_lab_env
if [ ! -f "$(LAB_DIR)/lab.env" ]; then \
  echo "ERROR: $(LAB_DIR)/lab.env not found: start the lab first (make lab-up)" >&2; exit 1; \
fi
endef

.PHONY: help setup test sanity lint unit integration molecule lab-up lab-down \
        demo benchmark benchmark-tviews benchmark-services benchmark-awx changelog-lint build clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  \1\t/' | expand -t 18

# `make test` runs each stage as a sub-make with INCIDENT_SETUP_DONE=1, so setup
# runs once per `make test`.
setup: ## Debian packages, .venv, ansible-test offline pip bootstrap, collection link
ifndef INCIDENT_SETUP_DONE
	@$(call banner,setup)
	@bash "$(ROOT)/scripts/bootstrap.sh"
	@mkdir -p "$(dir $(COLLECTION_LINK))"
	@ln -sfn ../../../.. "$(COLLECTION_LINK)"
	@test -f "$(COLLECTION_LINK)/galaxy.yml" || { echo "ERROR: $(COLLECTION_LINK) does not resolve to the checkout" >&2; exit 1; }
endif

test: setup ## setup, then sanity lint unit lab-up integration molecule (stops at the first failure)
	@start=$$(date +%s); summary=""; \
	for stage in $(TEST_STAGES); do \
	  $(call banner,make $$stage); \
	  t0=$$(date +%s); rc=0; \
	  $(MAKE) -C "$(ROOT)" $$stage INCIDENT_SETUP_DONE=1 || rc=$$?; \
	  took=$$(( $$(date +%s) - t0 )); \
	  if [ "$$rc" -ne 0 ]; then \
	    summary="$$summary$$(printf '  %-15s FAILED (exit %s, %ss)' "$$stage" "$$rc" "$$took")\n"; \
	    $(call banner,make test: FAILED at stage '$$stage'); \
	    printf "$$summary"; exit 1; \
	  fi; \
	  summary="$$summary$$(printf '  %-15s ok (%ss)' "$$stage" "$$took")\n"; \
	done; \
	$(call banner,make test: all stages passed in $$(( $$(date +%s) - start ))s); \
	printf "$$summary"

sanity: setup ## ansible-test sanity on a copy of the tracked and untracked, not ignored files
	@command -v git >/dev/null && git -C "$(ROOT)" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
	  || { echo "ERROR: make sanity needs a git work tree (it copies git ls-files -co --exclude-standard)" >&2; exit 1; }
	@rm -rf "$(SANITY_ROOT)"
	@mkdir -p "$(SANITY_ROOT)"
	@cd "$(ROOT)" && git ls-files -z -co --exclude-standard \
	  | while IFS= read -r -d '' f; do if [ -e "$$f" ] || [ -L "$$f" ]; then printf '%s\0' "$$f"; fi; done \
	  | rsync -a --from0 --files-from=- ./ "$(SANITY_ROOT)/"
	@# The copy lies inside this checkout, under an ignored directory: give it a
	@# git repository of its own, or ansible-test finds no files to test.
	@git -C "$(SANITY_ROOT)" init -q
	cd "$(SANITY_ROOT)" && ansible-test sanity --requirements --python $(PYTHON_VERSION) --color no $(SANITY_ARGS)

lint: setup ## ansible-lint, production profile, offline
	cd "$(ROOT)" && ansible-lint --offline --profile production $$([ -t 1 ] || echo --nocolor) $(LINT_ARGS)

unit: setup ## pytest tests/unit
	@cd "$(ROOT)" && $(call pytest,tests/unit)

integration: setup ## pytest tests/integration against the running lab on INTEGRATION_WORKERS xdist workers (2; 0: serial) (sources LAB_DIR/lab.env)
	@$(call need_lab_env)
	@cd "$(ROOT)" && set -a && . "$(LAB_DIR)/lab.env" && set +a && $(call pytest,tests/integration $(INTEGRATION_XDIST) --durations=30)

# Molecule's "prerun" would build this collection and install the copy into
# ~/.ansible/collections, where it shadows the working tree for every later
# ansible-lint/ansible run. An extra base config turns it off, and the
# collection comes from build/collections (the link to the checkout) instead.
MOLECULE_BASE := $(ROOT)/build/molecule/base-config.yml

molecule: setup ## molecule test of every scenario in molecule/*/ (lab env sourced when present)
	@cd "$(ROOT)" && scenarios=$$(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' 2>/dev/null | sort); \
	if [ -z "$$scenarios" ]; then echo "ERROR: no molecule scenario (molecule/<name>/molecule.yml)" >&2; exit 1; fi; \
	echo "molecule scenarios:" $$scenarios; \
	mkdir -p "$(dir $(MOLECULE_BASE))"; \
	printf -- '---\n# written by make molecule\nprerun: false\n' > "$(MOLECULE_BASE)"; \
	base=(); \
	if [ -f .config/molecule/config.yml ]; then base+=(-c .config/molecule/config.yml); fi; \
	base+=(-c "$(MOLECULE_BASE)"); \
	if [ -f "$(LAB_DIR)/lab.env" ]; then set -a; . "$(LAB_DIR)/lab.env"; set +a; fi; \
	if [ ! -t 1 ]; then export NO_COLOR=1; fi; \
	ANSIBLE_COLLECTIONS_PATH="$(ROOT)/build/collections" molecule "$${base[@]}" test --all $(MOLECULE_ARGS)

lab-up: setup ## start the lab (playbooks/lab.yml, lab_action=up)
	cd "$(ROOT)" && ansible-playbook -i inventory/lab.yml playbooks/lab.yml -e lab_action=up

lab-down: setup ## stop the lab (playbooks/lab.yml, lab_action=down)
	cd "$(ROOT)" && ansible-playbook -i inventory/lab.yml playbooks/lab.yml -e lab_action=down

demo: setup lab-up ## start the lab, then run scripts/demo.sh
	@$(call need_lab_env)
	cd "$(ROOT)" && bash scripts/demo.sh

# The Kubernetes side: tests/integration/test_service_kubernetes.py runs against the FAKE API server
# (tests/fake_k8s) in `make integration`; here against the real cluster of KUBECONFIG when it is set,
# in a throwaway namespace (docs/kubernetes.md). Needs no lab.
.PHONY: test-k8s
test-k8s: setup ## Kubernetes tests: the real cluster of $KUBECONFIG when set, else the FAKE API server
	@cd "$(ROOT)" && if [ -n "$${KUBECONFIG:-}" ]; then \
	  export INCIDENT_K8S_TARGET=real; echo "test-k8s: against the real cluster of KUBECONFIG=$$KUBECONFIG"; \
	else \
	  export INCIDENT_K8S_TARGET=fake; echo "test-k8s: KUBECONFIG is not set: against the FAKE API server"; \
	fi; \
	$(call pytest,tests/integration/test_service_kubernetes.py)

benchmark: setup ## pg_tviews emergency path vs runbook SQL and a generic community.postgresql playbook, then service_scale vs the Compose CLI (needs the lab)
	cd "$(ROOT)" && bash scripts/benchmark.sh

benchmark-tviews: setup ## pg_tviews: emergency_disable.yml and tview_info vs the runbook's SQL (needs the lab; not part of make test)
	@$(call need_lab_env)
	@cd "$(ROOT)" && set -a && . "$(LAB_DIR)/lab.env" && set +a && python benchmarks/tviews/run.py $(BENCHMARK_ARGS)

benchmark-services: setup ## workers 2 -> 20 -> 2 with service_scale vs the raw Compose CLI (needs the lab; not part of make test)
	@$(call need_lab_env)
	@cd "$(ROOT)" && set -a && . "$(LAB_DIR)/lab.env" && set +a && python benchmarks/services/scale_benchmark.py $(BENCHMARK_ARGS)

benchmark-awx: setup ## connection_pool_exhausted.yml and tview_incident.yml on 1, 10, 20 PostgreSQL targets (forks = targets): time, memory (needs the lab)
	@$(call need_lab_env)
	@cd "$(ROOT)" && set -a && . "$(LAB_DIR)/lab.env" && set +a && python benchmarks/awx_targets.py $(BENCHMARK_ARGS)

changelog-lint: setup ## antsibull-changelog lint (fragments) and changelogs/changelog.yaml
	cd "$(ROOT)" && antsibull-changelog lint && antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

build: setup ## ansible-galaxy collection build into build/dist
	cd "$(ROOT)" && ansible-galaxy collection build --force --output-path build/dist

# The execution environment's build context (offline); building the image needs the base image from a registry.
.PHONY: ee-context
ee-context: build ## ansible-builder create: execution-environment/ -> build/ee/context (docs/awx.md)
	cd "$(ROOT)" && ansible-builder create -f execution-environment/execution-environment.yml -c build/ee/context --output-filename Containerfile

clean: ## remove build/, test output and caches (keeps .venv and the lab)
	rm -rf "$(ROOT)/build" "$(ROOT)/tests/output" "$(ROOT)/.pytest_cache"
	find "$(ROOT)" -path "$(VENV)" -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv
	rm -rf "$(VENV)"
