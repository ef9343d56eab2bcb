# lambda-deployer. `make` lists the targets; each `## ` comment below is its line in that list.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_SAM := .venv-sam
# moto_server, kubectl, cargo-lambda (and its zig), cfn-lint and aws come from the venv; sam is called by path
# because aws-sam-cli pins older boto3/click and lives in its own venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
SAM := $(VENV_SAM)/bin/sam
export SAM_CLI_TELEMETRY := 0
# No credentials are needed for validation; keep sam and the aws CLI from looking for real ones.
SAM_ENV := AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

LAMBDA_DIR := $(or $(CARGO_TARGET_DIR),target)/lambda
BOOTSTRAP := $(LAMBDA_DIR)/lambda-deployer/bootstrap
PACKAGE := $(LAMBDA_DIR)/lambda-deployer.zip
# cargo-lambda cross-compiles with zig: keep its caches inside the project.
BUILD_ENV := XDG_CACHE_HOME=$(CURDIR)/.cache ZIG_GLOBAL_CACHE_DIR=$(CURDIR)/.cache/zig
FUZZ_SECONDS ?= 60

.PHONY: help tools test lint crds build package bench soak fuzz mutants demo clean distclean

help: ## List the targets
	@echo "lambda-deployer - make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/\1\t\2/' | \
		awk -F'\t' '{ printf "  %-10s %s\n", $$1, $$2 }'

tools: $(VENV)/.stamp $(VENV_SAM)/.stamp ## Create the Python tool venvs (.venv, .venv-sam) from tools/requirements*.txt

# A stamp per venv: pip runs again only when its pinned requirement file changes.
$(VENV)/.stamp: tools/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(VENV_SAM)/.stamp: tools/requirements-sam.txt
	test -x $(VENV_SAM)/bin/python || $(PYTHON) -m venv $(VENV_SAM)
	$(VENV_SAM)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

test: tools ## Run every test (unit, testbed integration, template policy) with the venv tools on PATH
	cargo test --workspace

# target-account.yaml is plain CloudFormation: both sam validate modes accept it, but only --lint (cfn-lint) checks it;
# the plain mode only proves that SAM leaves a template without its transform alone.
lint: tools ## fmt, clippy, cfn-lint, sam validate (--lint and plain) and the CRD-in-sync check
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cfn-lint template.yaml target-account.yaml
	$(SAM_ENV) $(SAM) validate --lint --region us-east-1
	$(SAM_ENV) $(SAM) validate --region us-east-1
	$(SAM_ENV) $(SAM) validate -t target-account.yaml --lint --region us-east-1
	$(SAM_ENV) $(SAM) validate -t target-account.yaml --region us-east-1
	@cargo run -q --bin crdgen | diff -u crds/lambdadeployment.yaml - \
		|| { echo "crds/lambdadeployment.yaml is out of date: run 'make crds'" >&2; exit 1; }
	@echo "lint: all clean"

crds: ## Regenerate crds/lambdadeployment.yaml from the Rust types
	cargo run -q --bin crdgen > crds/lambdadeployment.yaml.tmp
	mv crds/lambdadeployment.yaml.tmp crds/lambdadeployment.yaml

build: tools ## Cross-compile the Lambda bootstrap for arm64 (cargo lambda build --release --arm64)
	rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	mkdir -p .cache/zig
	start=$$(date +%s); \
	$(BUILD_ENV) cargo lambda build --release --arm64 --bin lambda-deployer; \
	echo "built $(BOOTSTRAP): $$(stat -c %s $(BOOTSTRAP)) bytes in $$(( $$(date +%s) - start )) s"

package: build ## Zip the bootstrap for upload: target/lambda/lambda-deployer.zip
	rm -f $(PACKAGE)
	$(PYTHON) -c 'import sys, zipfile; \
		z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED, compresslevel=9); \
		z.write(sys.argv[2], "bootstrap"); z.close()' $(PACKAGE) $(BOOTSTRAP)
	@echo "packaged $(PACKAGE): $$(stat -c %s $(PACKAGE)) bytes"

bench: tools ## Fleet benchmark against the testbed with Lambda's quotas on (release build; prints tables)
	cargo bench --bench fleet

soak: tools ## Full fault-matrix soak, 200 LambdaDeployments (make test runs a 40-LD variant)
	SOAK_LDS=200 cargo test --release --test soak -- --nocapture

# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 unlocks them on the stable toolchain.
fuzz: ## Fuzz payload decoding and key parsing for FUZZ_SECONDS (default 60) each; needs cargo-fuzz
	@command -v cargo-fuzz >/dev/null || { echo "make fuzz needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
	for target in $$(cargo fuzz list); do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run "$$target" -- -max_total_time=$(FUZZ_SECONDS); \
	done

# The pure core's own tests kill its mutants: unit tests, the payload corpus; nothing that needs the testbed.
mutants: ## Mutation check of the pure core (src/plan.rs, key.rs, trigger.rs) with cargo-mutants; not in CI (slow)
	@command -v cargo-mutants >/dev/null || { echo "make mutants needs cargo-mutants: cargo install cargo-mutants --locked" >&2; exit 1; }
	cargo mutants --package lambda-deployer --file src/plan.rs --file src/key.rs --file src/trigger.rs \
		--output target/mutants -- --lib --test trigger_decoding --test fuzz_corpus_replay

demo: tools ## Show it working with no AWS account: testbed, three functions, the real deployer under cargo lambda watch
	scripts/demo.sh

clean: ## Remove build outputs, caches and demo state (keeps the venvs)
	cargo clean
	rm -rf .cache .demo .aws-sam fuzz/target fuzz/artifacts

distclean: clean ## Also remove the Python venvs
	rm -rf $(VENV) $(VENV_SAM)
