# gardien: `make demo` runs the gateway in front of the demo API; `make test` runs the
# whole suite. Both install the system packages they need (see scripts/install-deps.sh).

CARGO ?= cargo
POLICIES := $(wildcard policies/*.yaml)
# Example values so `check-policies` can validate staging and production here; a deploy
# pipeline runs `gardien check` with the real environment instead.
POLICY_CHECK_ENV := API_UPSTREAM_URL=https://api.example.run.app \
	BACKEND_UPSTREAM_URL=http://10.0.0.5:8081 \
	FRONTEND_URL=https://app.example.com \
	FRONTEND_URL_PROD=https://www.example.com \
	JWT_ISSUER=https://id.example.com/ \
	JWT_AUDIENCE=api.example.com \
	JWKS_URL=https://id.example.com/.well-known/jwks.json \
	GARDIEN_INTERNAL_SECRET=example-internal-secret-of-at-least-32-bytes \
	REDIS_URL=redis://10.0.0.3:6379

.PHONY: demo test staging-check test-alerts test-node test-manifests image build build-release check-policies env-docs bench bench-load bench-delivery lint fmt deps-build deps-test deps-bench deps-image clean

demo: deps-build build
	scripts/demo.sh

# The release build first: tests/sentry.rs and backend/tests/sentry.rs run it (error reports
# are tested in the build that ships).
test: deps-test build build-release
	$(CARGO) test --workspace --all-targets
	$(MAKE) check-policies
	$(MAKE) test-alerts
	scripts/contract-test.sh
	$(MAKE) test-node
	$(MAKE) test-manifests

# The alert rules are valid and behave as deploy/prometheus/alerts_test.yaml says (promtool,
# from Debian's `prometheus` package); tests/deploy.rs checks their runbook sections and
# metric names.
test-alerts: deps-test
	promtool check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && promtool test rules alerts_test.yaml

# clients/node (the existing API's side of X-Gardien-Identity) with Node's own test runner,
# against the debug `gardien` that `build` makes (GARDIEN_BIN: wherever CARGO_TARGET_DIR put it).
test-node: deps-test build
	cd clients/node && GARDIEN_BIN=$(abspath $(or $(CARGO_TARGET_DIR),target)/debug/gardien) npm test

# deploy/cloudrun and deploy/gke against the Kubernetes schemas, offline and strict
# (kubernetes-validate from PyPI, in its own virtual environment); tests/manifests.rs checks
# they agree with the policy, env-docs and docs/DEPLOYMENT.md.
test-manifests: deps-test
	scripts/validate-manifests.sh

# The container image with Podman, on a local Debian base (no registry needed), then its
# smoke check: the production policy, both binaries, nonroot, no shell (docs/IMAGE.md).
# Needs root, Redis and PostgreSQL on loopback; `scripts/image.sh` alone only builds.
image: deps-image
	scripts/image.sh --check

# The whole stack in its staging shape on loopback (PostgreSQL at 127.0.0.1:5432, Redis at
# 127.0.0.1:6379), then every critical flow, one line each (docs/RUNBOOK.md#the-staging-check).
# `make test` runs it too (crates/gardien-staging-check/tests/local_stack.rs).
staging-check: deps-test build
	scripts/staging-check.sh

build:
	$(CARGO) build --workspace --bins --examples

build-release:
	$(CARGO) build --release --workspace --bins

# Each policy is checked on every platform `client_ip` can name (docs/POLICY.md#client_ip).
CLIENT_IP_PLATFORMS := cloud_run google_load_balancer direct

check-policies: build
	@for policy in $(POLICIES); do \
		for platform in $(CLIENT_IP_PLATFORMS); do \
			env $(POLICY_CHECK_ENV) GARDIEN_CLIENT_IP=$$platform \
				target/debug/gardien check --policy $$policy >/dev/null || exit 1; \
		done; \
		env $(POLICY_CHECK_ENV) GARDIEN_CLIENT_IP=cloud_run target/debug/gardien check --policy $$policy || exit 1; \
	done

# docs/ENVIRONMENT.md's generated blocks, from `gardien env-docs` and `gardien-backend
# env-docs` (tests/env_docs.rs and backend/tests/env_docs.rs fail when they drift).
env-docs: deps-build
	CARGO="$(CARGO)" scripts/env-docs.sh

bench: deps-build
	$(CARGO) bench --bench cors --bench jwt --bench rate_limit

# Real processes on loopback under bounded load; rewrites the load table of
# docs/BENCHMARKS.md (about a minute; needs Redis on 127.0.0.1:6379 for the shared-limit
# scenario), then the comparison with HAProxy, nginx and a minimal Pingora (benches/compare/,
# about five minutes) and its chart docs/benchmarks/compare.svg.
bench-load: deps-bench
	$(CARGO) build --release -p gardien-backend -p bench-pingora-minimal
	$(CARGO) bench --bench load
	$(CARGO) bench --bench compare

# Notifications accepted per second and POST → provider latency, on SQLite and PostgreSQL,
# against the fake SendGrid (about a minute); rewrites the delivery table of
# docs/BENCHMARKS.md.
bench-delivery: deps-bench
	$(CARGO) build --release -p gardien-backend
	$(CARGO) bench -p gardien-backend --bench delivery

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

deps-bench:
	@scripts/install-deps.sh bench

deps-image:
	@scripts/install-deps.sh image

clean:
	$(CARGO) clean
