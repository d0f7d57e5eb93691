# Trellis: `make run` runs the main job, `make test` runs the whole suite. Both install what they need.
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# libcurl4-openssl-dev: the shop services use URLSession, whose static Foundation needs -lcurl to link.
APT_BUILD := libsystemd-dev libssl-dev libsqlite3-dev zlib1g-dev libsnappy-dev pkg-config libcurl4-openssl-dev
# chromium, chromium-driver, python3-selenium: the web UI's suite runs in a real headless browser;
# python3-jwt (PyJWT): an independent JWT implementation signs the gateway tests' tokens.
APT_TEST  := $(APT_BUILD) openssl etcd-server victoria-metrics prometheus python3 python3-snappy systemd-journal-remote curl dnsutils \
             chromium chromium-driver python3-selenium python3-jwt python3-cryptography
APT_BENCH := $(APT_BUILD) nginx-light haproxy wrk etcd-server etcd-client curl python3 python3-snappy python3-prometheus-client dnsutils dnsperf dnsmasq-base \
             python3-jwt python3-cryptography openssl

# Installs the listed Debian packages that are missing (apt-get update first, non-interactive).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: run test build release deps-build deps-test deps-bench bench clean

deps-build:
	$(call apt_install,$(APT_BUILD))

deps-test:
	$(call apt_install,$(APT_TEST))

deps-bench:
	$(call apt_install,$(APT_BENCH))

build: deps-build
	$(SWIFT) build

SHOP := shop-users shop-catalog shop-orders shop-notifications

## Release binaries carry the Swift runtime and Foundation (linked statically): fewer resident pages
## per process and direct runtime calls (benchmarks/README.md, sidecar section).
release: deps-build
	for product in trellis $(SHOP); do $(SWIFT) build -c release --static-swift-stdlib --product $$product || exit 1; done

## The main job: the example shop (examples/shop) on one machine — registry on an embedded SQLite
## store, collector, and every service replica behind its sidecar. Ctrl-C stops it all.
run: release
	./.build/release/trellis up examples/shop/topology.yaml

## The whole suite: unit tests and integration tests against the real binary.
test: deps-test
	$(SWIFT) build --build-tests
	TRELLIS_BIN=$(CURDIR)/.build/debug/trellis $(SWIFT) test --skip-build --disable-swift-testing

## Benchmarks (never part of `make test`); figures go to benchmarks/README.md.
bench: deps-bench release
	./benchmarks/registry.sh
	./benchmarks/sidecar.sh
	./benchmarks/collector.sh

clean:
	rm -rf .build
