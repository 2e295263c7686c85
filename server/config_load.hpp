// Building a Config from the command line and the TOML file it names (flags win), with every
// mistake reported as one line naming the flag or `file: key`. Only config.cpp sees cxxopts and
// toml++; this header is plain C++ so tests and main can call it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/config.hpp"

namespace gearbox::core {

// Exit status for any configuration error (a bad flag, a bad file, an unknown backend), for both
// serving and --check.
inline constexpr int kConfigErrorStatus = 2;

struct ConfigResult {
  Config config;
  bool ok = false;        // false: `error` holds the one line to print
  std::string error;      // e.g. `--max-body: "12q" is not a size (use 16k, 1m or bytes)`
  bool exit_now = false;  // true for --help, --version and any error: print, exit(exit_status)
  int exit_status = 0;    // 0 for --help/--version, kConfigErrorStatus on error
  std::string output;     // --help / --version text, for stdout
  bool check = false;     // --check: validate (main also checks the backend), then exit
  bool help = false;      // --help: main appends the backend list to `output`
  bool version = false;   // --version: main appends the backends this build has to `output`
  std::string backend_source = "--backend";  // where `backend` was set, to name it in an error
};

// Parses argv (argv[0] is the program name) and the file named by --config. Reads that file and
// resolves upstream host names (getaddrinfo) but has no other side effects: nothing is printed.
// Precedence: flag > file > the defaults in config.hpp. Flags that name a list (--upstream,
// --trusted-proxy) replace the file's list; --balance and --proxy-*-timeout apply to every group.
ConfigResult load_config(int argc, const char* const* argv);

// "500ms", "3s", "2m", "1h", or plain seconds ("10"). Nullopt when malformed or above 7 days.
std::optional<Duration> parse_duration(std::string_view text);
// "16k", "1m", "1g" (powers of 1024, case-insensitive) or plain bytes. Nullopt when malformed
// or above 1 TiB.
std::optional<std::uint64_t> parse_size(std::string_view text);
// "host:port" or "[v6]:port" into its parts (brackets removed). False when malformed or when the
// port is not 0..65535.
bool split_host_port(std::string_view text, std::string* host, int* port);
// Resolves "HOST:PORT" (numeric IPv4/IPv6 or a name; a name takes its first IPv4 address, else
// its first address). Port 0 is refused. On failure returns false and sets *error to a
// message without the leading label.
bool resolve_endpoint(std::string_view text, Endpoint* out, std::string* error);
// "10.0.0.0/8", "::1/128", or a bare address (a /32 or /128). Host bits are cleared.
bool parse_cidr(std::string_view text, Cidr* out);
// Inverse of the Balance/Mode enums' text, for logs and --help.
std::string_view balance_name(Balance balance);
std::string_view mode_name(Mode mode);

}  // namespace gearbox::core
