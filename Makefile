# gearbox: the two newcomer commands are `make run` and `make test`.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
LISTEN ?= 127.0.0.1:8080
BACKEND ?=
CTEST_ARGS ?=

DEB_PACKAGES := build-essential cmake pkg-config node-llhttp liburing-dev libboost-fiber-dev \
  libboost-context-dev libcxxopts-dev libtomlplusplus-dev libgtest-dev libcurl4-openssl-dev libbenchmark-dev \
  wrk curl nginx-light python3 python3-matplotlib util-linux procps iproute2 clang-format git systemd

.PHONY: all deps bench-deps build build-asan run test test-unit format format-check bench bench-smoke install clean

all: build

# The load-test peers' packages: `make bench` installs them (`make test` needs none of them).
BENCH_PACKAGES := golang-go python3-uvloop nginx-light

# The load-test tooling runs on Debian's interpreter, which has python3-matplotlib/-uvloop.
PYTHON := /usr/bin/python3

# $(call install_missing,PACKAGES): apt-get install whichever are not installed (only then).
define install_missing
	@missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "make $@: installing" $$missing; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

# Installs only what is missing; runs apt-get only then.
deps:
	$(call install_missing,$(DEB_PACKAGES))
	@# The IPv6 listener tests need ::1 on loopback (containers often start with it disabled).
	@if [ "$$(cat /proc/sys/net/ipv6/conf/lo/disable_ipv6 2>/dev/null)" = 1 ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO sysctl -q -w net.ipv6.conf.lo.disable_ipv6=0 || \
	    echo "make deps: could not enable IPv6 on loopback; the [::1] listener test will fail"; \
	fi

bench-deps:
	$(call install_missing,$(BENCH_PACKAGES))

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGEARBOX_SANITIZE=ON

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
build-asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target gearbox_unit_tests

run: build
	./$(BUILD)/gearbox --listen $(LISTEN) $(if $(BACKEND),--backend $(BACKEND))

test-unit: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit $(CTEST_ARGS)

test: build build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit $(CTEST_ARGS)
	cd $(BUILD) && ctest --output-on-failure -j 2 $(CTEST_ARGS)
	$(PYTHON) loadtest/run.py --build $(BUILD) --smoke

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.cpp' '*.hpp')

bench: build bench-deps
	$(PYTHON) loadtest/run.py --build $(BUILD) $(BENCH_ARGS)

# The core's own cost per request, without I/O (bench/core_bench.cpp).
bench-core: build
	./$(BUILD)/gearbox_core_bench $(BENCH_ARGS)

bench-smoke: build
	$(PYTHON) loadtest/run.py --build $(BUILD) --smoke

# Installs the binary, example configs and a systemd unit under PREFIX (default /usr/local).
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
