// Process-wide logging to stderr: `gearbox: <level>: <message>`, one write(2) per line so lines
// from threads and processes never interleave. Checking the level is one relaxed atomic load,
// so a disabled call costs nothing but that (arguments are still evaluated: keep them cheap).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/access_log.hpp"

namespace gearbox::core {

enum class LogLevel : std::uint8_t { kError, kWarn, kInfo, kDebug };

namespace log_detail {
inline std::atomic<LogLevel> g_level{LogLevel::kInfo};
inline std::atomic<bool> g_access{false};
}  // namespace log_detail

// Set once by main from Config::log_level (and again by tests); safe to call from any thread.
inline void set_log_level(LogLevel level) {
  log_detail::g_level.store(level, std::memory_order_relaxed);
}
inline LogLevel log_level() {
  return log_detail::g_level.load(std::memory_order_relaxed);
}
inline bool log_enabled(LogLevel level) {
  return level <= log_level();
}

// Access logging (Config::access_log), off by default: on once open_access_log() opened it.
inline void set_access_log(bool on) {
  log_detail::g_access.store(on, std::memory_order_relaxed);
}
inline bool access_log_enabled() {
  return log_detail::g_access.load(std::memory_order_relaxed);
}

// "error", "warn", "info", "debug"; nullopt otherwise.
std::optional<LogLevel> parse_log_level(std::string_view text);
std::string_view log_level_name(LogLevel level);

// Where lines go: stderr unless a test points it at a pipe. Returns the previous fd.
int set_log_fd(int fd);

// Writes `gearbox: <level>: <message>\n` if `level` is enabled. Newlines inside the message
// become spaces, so one call is always one line.
void log_line(LogLevel level, std::string_view message);
// Writes `gearbox: <message>\n` whatever the level (the "listening on" line).
void log_plain(std::string_view message);

// printf-style front ends; they return before formatting when the level is disabled.
void log_error(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* format, ...) __attribute__((format(printf, 1, 2)));
// `gearbox: access: <message>` when access logging is on, whatever the level. Suggested
// message: `<peer> "<method> <target>" <status> <bytes sent> <ms>ms` (a backend-side clock).
void log_access(const char* format, ...) __attribute__((format(printf, 1, 2)));

// --- The access log sink ------------------------------------------------------------------------
// Where access lines go, set once by main before serving: "-" = stderr, each line written at once
// as `gearbox: access: <line>` (so it interleaves with the other log lines whole); a path = that
// file (created 0644, appended), buffered in a few per-thread shards (no lock contention between
// a worker's threads), written when a shard fills, at least once a second by a flusher thread of
// each process (prefork workers start theirs after fork), and by flush_access_log(). Turns
// access logging on. False with *error (one line, naming the path) when the file cannot be
// opened.
bool open_access_log(const std::string& target, AccessFormat format, std::string* error);
AccessFormat access_log_format();
// One formatted line, ending in '\n' (format_access()). Off the hot path unless logging is on.
void write_access_line(std::string_view line);
// Writes out what is buffered (main before exiting, prefork workers before _exit).
void flush_access_log();
// Async-signal-safe (main's SIGUSR1 handler, logrotate's convention): every process of this
// server, prefork workers included, reopens the file by its path within a second.
void request_access_log_reopen();

}  // namespace gearbox::core
