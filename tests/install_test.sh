#!/usr/bin/env bash
# `cmake --install` into a temporary prefix: the binary runs and lists its backends, the example
# configurations validate with --check, and systemd accepts the unit (systemd-analyze verify).
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null

fail() { echo "install_test: $*" >&2; exit 1; }
bin="$prefix/bin/gearbox"
unit="$prefix/lib/systemd/system/gearbox.service"
conf="$prefix/etc/gearbox/gearbox.toml"
[ -x "$bin" ] || fail "no executable $bin"
[ -f "$unit" ] || fail "no unit $unit"
[ -f "$conf" ] || fail "no configuration $conf"

version=$("$bin" --version)
grep -Eq '^gearbox [0-9]+\.[0-9]+\.[0-9]+$' <<<"$version" || fail "--version: $version"
grep -Eq '^backends: .*thread' <<<"$version" || fail "--version lists no backends: $version"

for example in "$prefix"/share/doc/gearbox/examples/*.toml; do
  "$bin" --config "$example" --check >/dev/null 2>&1 || fail "--check rejects $example"
done
[ -f "$prefix/share/doc/gearbox/examples/proxy.toml" ] || fail "examples are missing proxy.toml"

grep -q "^ExecStart=$bin --config $conf\$" "$unit" || fail "the unit does not start $bin: $(grep ExecStart "$unit")"
grep -q '^KillSignal=SIGTERM$' "$unit" || fail "the unit does not drain with SIGTERM"
grep -q '^ExecReload=/bin/kill -HUP $MAINPID$' "$unit" || fail "the unit does not reload with SIGHUP"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (make deps installs systemd)"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
echo "install_test: ok ($prefix)"
