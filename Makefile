# gearbox: the two newcomer commands are `make run` and `make test`.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
# Backends with threads sharing memory: their conformance and proxy suites also run against a
# ThreadSanitizer binary in `make test`. Add a backend here when it lands. Not fiber yet:
# Debian's Boost.Context/Fiber are built without TSan's fiber annotations (BOOST_USE_TSAN), so
# TSan cannot follow the stack switches: it reported races inside work_stealing's steal(), and
# with shared_work it crashes itself (SEGV in its stack unwinder when a scheduler is torn down).
TSAN_BACKENDS ?= thread pool
# The suites of that run (GoogleTest filter over the integration binary of $(BUILD)).
TSAN_SUITES ?= Backends/EchoTest.*:Backends/ErrorTest.*:Backends/LifecycleTest.*:Backends/DrainTest.*:Backends/ProxyEchoTest.*:Backends/ProxyFaultTest.*:Backends/ProxyBalanceTest.*:Backends/ReloadTest.*:Backends/ProxyReloadTest.*
JOBS ?= $(shell nproc)
LISTEN ?= 127.0.0.1:8080
BACKEND ?=
CTEST_ARGS ?=

DEB_PACKAGES := build-essential cmake pkg-config node-llhttp liburing-dev libboost-fiber-dev \
  libboost-context-dev libcxxopts-dev libtomlplusplus-dev libgtest-dev libcurl4-openssl-dev libbenchmark-dev \
  wrk curl nginx-light python3 python3-matplotlib python3-prometheus-client chromium util-linux \
  procps iproute2 clang-format git systemd libtsan2

.PHONY: all deps bench-deps bench-packages build build-asan build-tsan run test test-unit test-tsan format format-check bench bench-smoke install clean

all: build

# The load-test peers' packages: `make bench` installs them (`make test` needs none of them).
BENCH_PACKAGES := golang-go python3-uvloop nginx-light libnginx-mod-http-echo haproxy

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

# Debian's haproxy package enables (and, under systemd, starts) a service of its own; when
# bench-deps is what installed it, that service is disabled and stopped: the load test starts
# its own haproxy, with a generated config, by PID.
bench-deps:
	@new_haproxy=$$(dpkg-query -W -f='$${Status}\n' haproxy 2>/dev/null | \
	    grep -q '^install ok installed' || echo yes); \
	$(MAKE) --no-print-directory bench-packages && \
	if [ -n "$$new_haproxy" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "make bench-deps: disabling the haproxy service the package installed"; \
	  $$SUDO systemctl disable --quiet haproxy 2>/dev/null; \
	  if [ -d /run/systemd/system ]; then $$SUDO systemctl stop haproxy; fi; \
	fi

bench-packages:
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

$(TSAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGEARBOX_SANITIZE=thread

# The server binary under ThreadSanitizer (the tests themselves come from $(BUILD)).
build-tsan: deps $(TSAN_BUILD)/CMakeCache.txt
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target gearbox

# The conformance and proxy suites over $(TSAN_BACKENDS), against the TSan binary, in three
# shards side by side (three, not two: tests alternate between backends, and two shards would
# give all of one backend's tests to one shard). Any report fails the run: the server halts at the first one (its exit
# status and the "ThreadSanitizer" line in its log both fail the test).
test-tsan: build build-tsan
	@export GEARBOX_TEST_BINARY=$(abspath $(TSAN_BUILD))/gearbox \
	  GEARBOX_TEST_BACKENDS="$(TSAN_BACKENDS)" GTEST_TOTAL_SHARDS=3 \
	  TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 atexit_sleep_ms=200"; \
	pids=; for i in 0 1 2; do \
	  GTEST_SHARD_INDEX=$$i ./$(BUILD)/tests/gearbox_integration_tests --gtest_brief=1 \
	    --gtest_filter='$(TSAN_SUITES)' > $(TSAN_BUILD)/shard-$$i.log 2>&1 & pids="$$pids $$!"; \
	done; \
	ok=0; for p in $$pids; do wait $$p || ok=1; done; \
	tail -n 2 $(TSAN_BUILD)/shard-*.log; \
	if [ $$ok != 0 ]; then cat $(TSAN_BUILD)/shard-*.log; \
	  echo "make test-tsan: FAILED (logs in $(TSAN_BUILD)/shard-*.log)"; exit 1; fi

run: build
	./$(BUILD)/gearbox --listen $(LISTEN) $(if $(BACKEND),--backend $(BACKEND))

test-unit: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit $(CTEST_ARGS)

test: build build-asan build-tsan
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit $(CTEST_ARGS)
	cd $(BUILD) && ctest --output-on-failure -j 2 $(CTEST_ARGS)
	$(MAKE) --no-print-directory test-tsan
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
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
