// The log writer: formats into a stack buffer (a heap string only for long lines) and emits each
// line with a single write(2), so concurrent writers never interleave within a line.
#include "server/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace gearbox::core {
namespace {

std::atomic<int> g_fd{STDERR_FILENO};

void write_all(const char* data, std::size_t size) {
  int fd = g_fd.load(std::memory_order_relaxed);
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Emits "gearbox: " + tag + message + "\n", newlines in message flattened to spaces.
void emit(std::string_view tag, std::string_view message) {
  constexpr std::string_view kPrefix = "gearbox: ";
  char stack[1024];
  std::string heap;
  std::size_t size = kPrefix.size() + tag.size() + message.size() + 1;
  char* out = stack;
  if (size > sizeof stack) {
    heap.resize(size);
    out = heap.data();
  }
  char* p = out;
  for (std::string_view part : {kPrefix, tag, message}) {
    for (char c : part) {
      *p++ = (c == '\n' || c == '\r') ? ' ' : c;
    }
  }
  *p = '\n';
  write_all(out, size);
}

void emit_v(std::string_view tag, const char* format, va_list args) {
  char stack[1024];
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(stack, sizeof stack, format, copy);
  va_end(copy);
  if (n < 0) {
    return;
  }
  if (static_cast<std::size_t>(n) < sizeof stack) {
    emit(tag, std::string_view(stack, static_cast<std::size_t>(n)));
    return;
  }
  std::string heap(static_cast<std::size_t>(n) + 1, '\0');
  std::vsnprintf(heap.data(), heap.size(), format, args);
  heap.resize(static_cast<std::size_t>(n));
  emit(tag, heap);
}

std::string_view tag_of(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error: ";
    case LogLevel::kWarn:
      return "warn: ";
    case LogLevel::kInfo:
      return "info: ";
    case LogLevel::kDebug:
      return "debug: ";
  }
  return "";
}

void log_v(LogLevel level, const char* format, va_list args) {
  if (log_enabled(level)) {
    emit_v(tag_of(level), format, args);
  }
}

}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view text) {
  for (LogLevel level : {LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo, LogLevel::kDebug}) {
    if (log_level_name(level) == text) {
      return level;
    }
  }
  return std::nullopt;
}

std::string_view log_level_name(LogLevel level) {
  std::string_view tag = tag_of(level);
  return tag.substr(0, tag.size() - 2);
}

int set_log_fd(int fd) {
  return g_fd.exchange(fd);
}

void log_line(LogLevel level, std::string_view message) {
  if (log_enabled(level)) {
    emit(tag_of(level), message);
  }
}

void log_plain(std::string_view message) {
  emit("", message);
}

void log_error(const char* format, ...) {
  va_list args;
  va_start(args, format);
  log_v(LogLevel::kError, format, args);
  va_end(args);
}

void log_warn(const char* format, ...) {
  va_list args;
  va_start(args, format);
  log_v(LogLevel::kWarn, format, args);
  va_end(args);
}

void log_info(const char* format, ...) {
  va_list args;
  va_start(args, format);
  log_v(LogLevel::kInfo, format, args);
  va_end(args);
}

void log_debug(const char* format, ...) {
  va_list args;
  va_start(args, format);
  log_v(LogLevel::kDebug, format, args);
  va_end(args);
}

void log_access(const char* format, ...) {
  if (!access_log_enabled()) {
    return;
  }
  va_list args;
  va_start(args, format);
  emit_v("access: ", format, args);
  va_end(args);
}

}  // namespace gearbox::core
