// Process-wide logging to stderr: `gearbox: <level>: <message>`, one write(2) per line so lines
// from threads and processes never interleave. Checking the level is one relaxed atomic load,
// so a disabled call costs nothing but that (arguments are still evaluated: keep them cheap).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

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

// Access logging (Config::access_log), off by default.
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

}  // namespace gearbox::core
