// The log writer: formats into a stack buffer (a heap string only for long lines) and emits each
// line with a single write(2), so concurrent writers never interleave within a line. Also the
// access log's sink: a file buffered per thread shard, its flusher thread and reopening.
#include "server/log.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>

namespace gearbox::core {
namespace {

std::atomic<int> g_fd{STDERR_FILENO};

void write_fd(int fd, const char* data, std::size_t size) {
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

void write_all(const char* data, std::size_t size) {
  write_fd(g_fd.load(std::memory_order_relaxed), data, size);
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

// --- The access log sink ----------------------------------------------------------------------

namespace {

constexpr std::size_t kShards = 16;
constexpr std::size_t kShardFlushBytes = 32 * 1024;
constexpr int kFlushIntervalMs = 500;

struct Shard {
  std::mutex mu;
  std::string buf;
};

// Never destroyed: the flusher thread may still run while the process exits.
struct Sink {
  std::string path;  // empty: stderr
  AccessFormat format = AccessFormat::kCombined;
  std::atomic<int> fd{-1};
  std::array<Shard, kShards> shards;
  std::atomic<unsigned> next_shard{0};
  // Bumped by request_access_log_reopen(); in shared memory made before any fork, so that the
  // master's SIGUSR1 reaches every prefork worker's flusher.
  std::atomic<std::uint32_t>* reopen_generation = nullptr;
  // The generation `fd` was opened at. Per process: a worker forked before a reopen inherits
  // the old value with the old fd, and so reopens too (whenever its flusher starts).
  std::uint32_t opened_generation = 0;
  std::atomic<bool> flusher_wanted{false};  // set in a forked child: start one on next write
};

Sink* g_sink = nullptr;

void flush_shard(Shard& shard, std::string& spare) {
  {
    std::lock_guard lock(shard.mu);
    spare.swap(shard.buf);
  }
  if (!spare.empty()) {
    write_fd(g_sink->fd.load(std::memory_order_relaxed), spare.data(), spare.size());
    spare.clear();
  }
}

int open_file(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

// Points the sink's fd at a fresh open of the path (logrotate moved the old file away).
void reopen() {
  int fresh = open_file(g_sink->path);
  if (fresh < 0) {
    log_error("access log: cannot reopen %s: %s", g_sink->path.c_str(), std::strerror(errno));
    return;
  }
  int fd = g_sink->fd.load(std::memory_order_relaxed);
  ::dup2(fresh, fd);  // atomic for concurrent writers: each write goes to the old or the new file
  ::close(fresh);
}

void flusher() {
  std::string spare;
  for (;;) {
    std::uint32_t wanted = g_sink->reopen_generation->load(std::memory_order_relaxed);
    if (wanted != g_sink->opened_generation) {
      g_sink->opened_generation = wanted;
      reopen();
    }
    for (Shard& shard : g_sink->shards) {
      flush_shard(shard, spare);
    }
    ::poll(nullptr, 0, kFlushIntervalMs);
  }
}

void start_flusher() {
  std::thread(flusher).detach();
}

// fork() with a shard locked would leave the child a mutex nobody unlocks; the child's copy of
// the buffered lines belongs to the parent, which writes them itself.
void before_fork() {
  for (Shard& shard : g_sink->shards) {
    shard.mu.lock();
  }
}
void after_fork_parent() {
  for (Shard& shard : g_sink->shards) {
    shard.mu.unlock();
  }
}
void after_fork_child() {
  for (Shard& shard : g_sink->shards) {
    shard.buf.clear();
    shard.mu.unlock();
  }
  g_sink->flusher_wanted.store(true, std::memory_order_relaxed);
}

Shard& my_shard() {
  thread_local unsigned index =
      g_sink->next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return g_sink->shards[index];
}

}  // namespace

bool open_access_log(const std::string& target, AccessFormat format, std::string* error) {
  static Sink* sink = new Sink;
  g_sink = sink;
  sink->format = format;
  if (target != "-") {
    int fd = open_file(target);
    if (fd < 0) {
      *error = "cannot open " + target + ": " + std::strerror(errno);
      return false;
    }
    sink->path = target;
    sink->fd.store(fd, std::memory_order_relaxed);
    void* shared = ::mmap(nullptr, sizeof(std::atomic<std::uint32_t>), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
      *error = std::string("cannot map the log reopen counter: ") + std::strerror(errno);
      return false;
    }
    sink->reopen_generation = new (shared) std::atomic<std::uint32_t>(0);
    ::pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child);
    start_flusher();
  }
  set_access_log(true);
  return true;
}

AccessFormat access_log_format() {
  return g_sink != nullptr ? g_sink->format : AccessFormat::kCombined;
}

void write_access_line(std::string_view line) {
  if (g_sink == nullptr || g_sink->path.empty()) {
    emit("access: ", line.substr(0, line.size() - (line.ends_with('\n') ? 1 : 0)));
    return;
  }
  if (g_sink->flusher_wanted.exchange(false, std::memory_order_relaxed)) {
    start_flusher();  // first line in a forked child (a prefork worker)
  }
  Shard& shard = my_shard();
  std::lock_guard lock(shard.mu);
  shard.buf.append(line);
  if (shard.buf.size() >= kShardFlushBytes) {
    write_fd(g_sink->fd.load(std::memory_order_relaxed), shard.buf.data(), shard.buf.size());
    shard.buf.clear();
  }
}

void flush_access_log() {
  if (g_sink == nullptr || g_sink->path.empty()) {
    return;
  }
  std::string spare;
  for (Shard& shard : g_sink->shards) {
    flush_shard(shard, spare);
  }
}

void request_access_log_reopen() {
  if (g_sink != nullptr && g_sink->reopen_generation != nullptr) {
    g_sink->reopen_generation->fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace gearbox::core
