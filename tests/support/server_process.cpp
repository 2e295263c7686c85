// The server-process fixture and run-to-completion helper (see server_process.hpp).
#include "tests/support/server_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <utility>

namespace gearbox::test {

namespace {

using Clock = std::chrono::steady_clock;

int decode_status(int raw) {
  if (WIFEXITED(raw)) {
    return WEXITSTATUS(raw);
  }
  if (WIFSIGNALED(raw)) {
    return -WTERMSIG(raw);
  }
  return -1;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Forks and execs `argv` with stdin /dev/null, stdout to `out_fd` and stderr to `err_fd` (-1 =
// /dev/null), in a new process group. Everything the child runs between fork and exec is
// async-signal-safe; the argv array is built before fork.
pid_t spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) {
    cargv.push_back(const_cast<char*>(a.c_str()));
  }
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid != 0) {
    return pid;
  }
  ::setpgid(0, 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int null_fd = ::open("/dev/null", O_RDWR);
  ::dup2(null_fd, 0);
  ::dup2(out_fd >= 0 ? out_fd : null_fd, 1);
  ::dup2(err_fd >= 0 ? err_fd : null_fd, 2);
  ::execv(cargv[0], cargv.data());
  static const char kMsg[] = "exec failed\n";
  (void)!::write(2, kMsg, sizeof kMsg - 1);
  ::_exit(127);
}

void split_lines(std::string& pending, std::vector<std::string>& lines, bool flush) {
  std::size_t start = 0;
  for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(pending.substr(start, nl - start));
  }
  pending.erase(0, start);
  if (flush && !pending.empty()) {
    lines.push_back(std::exchange(pending, {}));
  }
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    out += l;
    out += '\n';
  }
  return out;
}

// Fields 4 (ppid), 14 (utime) and 15 (stime) of /proc/PID/stat.
std::optional<ProcStat> read_proc_stat(pid_t pid) {
  // read(2), not an ifstream: a process that exits while its file is read fails the read with
  // ESRCH, which libstdc++'s filebuf turns into an exception whatever the stream's mask.
  std::string stat;
  int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::nullopt;
  }
  char buf[1024];
  ssize_t n = 0;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    stat.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (n < 0) {
    return std::nullopt;
  }
  auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 > stat.size()) {
    return std::nullopt;
  }
  std::istringstream fields(stat.substr(paren + 2));
  ProcStat out;
  fields >> out.state >> out.ppid;
  std::string skip;
  for (int field = 5; field < 14; ++field) {
    fields >> skip;
  }
  long utime = 0;
  long stime = 0;
  fields >> utime >> stime;
  if (!fields) {
    return std::nullopt;
  }
  out.cpu_ticks = utime + stime;
  return out;
}

}  // namespace

std::string ProcessResult::err_text() const {
  return join(err_lines);
}

ProcessResult run_process(const std::vector<std::string>& argv, Millis timeout) {
  ProcessResult result;
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return result;
  }
  pid_t pid = spawn(argv, out_pipe[1], err_pipe[1]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return result;
  }
  auto deadline = Clock::now() + timeout;
  std::string err;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_count = 2;
  while (open_count > 0) {
    int r = ::poll(fds, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    for (auto& p : fds) {
      if (p.fd < 0 || p.revents == 0) {
        continue;
      }
      char buf[4096];
      ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n > 0) {
        (p.fd == out_pipe[0] ? result.out : err).append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        p.fd = -1;
        --open_count;
      }
    }
  }
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  // The pipes are closed, so the process has exited or is about to; bound the wait anyway.
  int raw = 0;
  while (::waitpid(pid, &raw, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &raw, 0);
      break;
    }
    std::this_thread::sleep_for(Millis{5});
  }
  result.status = decode_status(raw);
  split_lines(err, result.err_lines, true);
  return result;
}

void raise_fd_limit(unsigned long want) {
  rlimit rl{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min<rlim_t>(want, rl.rlim_max);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  ASSERT_GE(rl.rlim_cur, want) << "RLIMIT_NOFILE hard limit too low for this test";
}

long proc_status(pid_t pid, std::string_view field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field)) {
      return std::stol(line.substr(field.size()));
    }
  }
  return -1;
}

bool is_error_line(std::string_view line) {
  static const char* const kMarkers[] = {
      "gearbox: error:", "gearbox: crit:",   "gearbox: alert:", "gearbox: emerg:",
      "gearbox: fatal:", "AddressSanitizer", "LeakSanitizer",   "ThreadSanitizer",
      "runtime error:",  "terminate called", "Assertion",       "Segmentation fault",
  };
  for (const char* marker : kMarkers) {
    if (line.find(marker) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !status_.has_value()) {
    ::kill(-pid_, SIGKILL);
    int raw = 0;
    ::waitpid(pid_, &raw, 0);
    status_ = decode_status(raw);
  }
  reap_and_join();
}

bool ServerProcess::start(const std::string& binary, const std::vector<std::string>& args,
                          Millis ready_timeout) {
  if (::access(binary.c_str(), X_OK) != 0) {
    ADD_FAILURE() << "server binary not found or not executable: " << binary;
    return false;
  }
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return false;
  }
  std::vector<std::string> argv{binary};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = spawn(argv, -1, err_pipe[1]);
  ::close(err_pipe[1]);
  if (pid_ < 0) {
    ::close(err_pipe[0]);
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return false;
  }
  reader_ = std::thread([this, fd = err_pipe[0]] { reader_loop(fd); });

  std::string command;
  for (const auto& a : argv) {
    command += a + " ";
  }
  auto deadline = Clock::now() + ready_timeout;
  std::string first;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, Millis{20}, [&] { return !lines_.empty() || log_closed_; });
      if (!lines_.empty()) {
        first = lines_.front();
        break;
      }
    }
    if (!running()) {
      ADD_FAILURE() << "server exited (status " << status_.value_or(-1)
                    << ") before reporting its port\n  command: " << command << "\n  log:\n"
                    << log_text();
      return false;
    }
    if (Clock::now() >= deadline) {
      stop(Millis{2000});
      ADD_FAILURE() << "server did not report its port within " << ready_timeout.count()
                    << " ms\n  command: " << command << "\n  log:\n"
                    << log_text();
      return false;
    }
  }
  static const std::regex kListening(
      R"(^gearbox: listening on (\S+):([0-9]+) \(backend ([^,]+), mode ([^)]+)\)$)");
  std::smatch m;
  if (!std::regex_match(first, m, kListening)) {
    stop(Millis{2000});
    ADD_FAILURE() << "first stderr line is not the listening line: \"" << first
                  << "\"\n  command: " << command << "\n  log:\n"
                  << log_text();
    return false;
  }
  first_line_ = first;
  host_ = m[1];
  port_ = std::stoi(m[2]);
  backend_ = m[3];
  mode_ = m[4];
  if (port_ <= 0 || port_ > 65535) {
    stop(Millis{2000});
    ADD_FAILURE() << "bad port in listening line: \"" << first << "\"";
    return false;
  }
  return true;
}

void ServerProcess::reader_loop(int fd) {
  std::string pending;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    if (r == 0) {
      std::lock_guard lock(mutex_);
      if (stop_reader_) {
        break;
      }
      continue;
    }
    if (r < 0 && errno == EINTR) {
      continue;
    }
    ssize_t n = r < 0 ? -1 : ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    pending.append(buf, static_cast<std::size_t>(n));
    std::lock_guard lock(mutex_);
    split_lines(pending, lines_, false);
    changed_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mutex_);
  split_lines(pending, lines_, true);
  log_closed_ = true;
  changed_.notify_all();
}

void ServerProcess::reap_and_join() {
  if (!reader_.joinable()) {
    return;
  }
  // The pipe may stay open in orphaned grandchildren; give the reader a moment to drain what
  // the server wrote, then stop it.
  {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, Millis{500}, [&] { return log_closed_; });
    stop_reader_ = true;
  }
  reader_.join();
}

std::vector<std::string> ServerProcess::log_lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

std::string ServerProcess::log_text() const {
  return join(log_lines());
}

bool ServerProcess::wait_for_log(std::string_view needle, Millis timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] {
    for (const auto& l : lines_) {
      if (l.find(needle) != std::string::npos) {
        return true;
      }
    }
    return false;
  });
}

std::vector<std::string> ServerProcess::unexpected_errors(
    const std::vector<std::string>& allowed) const {
  std::vector<std::string> out;
  for (const auto& line : log_lines()) {
    if (!is_error_line(line)) {
      continue;
    }
    bool ok = false;
    for (const auto& a : allowed) {
      ok = ok || line.find(a) != std::string::npos;
    }
    if (!ok) {
      out.push_back(line);
    }
  }
  return out;
}

std::vector<std::string> ServerProcess::untagged_lines() const {
  static const std::regex kTagged(R"(^gearbox: [a-z]+: .*)");
  std::vector<std::string> lines = log_lines();
  std::vector<std::string> out;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (!std::regex_match(lines[i], kTagged)) {
      out.push_back(lines[i]);
    }
  }
  return out;
}

std::vector<std::pair<pid_t, ProcStat>> ServerProcess::tree() const {
  std::vector<std::pair<pid_t, ProcStat>> out;
  if (pid_ <= 0 || status_.has_value()) {
    return out;
  }
  std::vector<std::pair<pid_t, ProcStat>> all;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (auto st = read_proc_stat(pid)) {
      all.emplace_back(pid, *st);
    }
  }
  std::vector<pid_t> pids{pid_};
  for (std::size_t i = 0; i < pids.size(); ++i) {
    for (const auto& [pid, st] : all) {
      if (pid == pids[i]) {
        out.emplace_back(pid, st);
      } else if (st.ppid == pids[i]) {
        pids.push_back(pid);
      }
    }
  }
  return out;
}

Millis ServerProcess::cpu_time() const {
  long ticks = 0;
  for (const auto& [pid, st] : tree()) {
    ticks += st.cpu_ticks;
  }
  return Millis{ticks * 1000 / ::sysconf(_SC_CLK_TCK)};
}

std::vector<pid_t> ServerProcess::children() const {
  std::vector<pid_t> out;
  for (const auto& [pid, st] : tree()) {
    if (pid != pid_ && st.ppid == pid_ && st.state != 'Z') {
      out.push_back(pid);
    }
  }
  return out;
}

int ServerProcess::open_fds() const {
  int n = 0;
  for (const auto& [pid, st] : tree()) {
    int mine = fd_count(pid);
    n += mine > 0 ? mine : 0;
  }
  return n;
}

int listen_queue(int port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);
  char local[64];
  char want[16];
  std::snprintf(want, sizeof want, ":%04X", port);
  while (std::getline(in, line)) {
    unsigned sl, state, tx, rx;
    char remote[64];
    if (std::sscanf(line.c_str(), " %u: %63s %63s %X %X:%X", &sl, local, remote, &state, &tx,
                    &rx) == 6 &&
        state == 0x0A && std::string(local).ends_with(want)) {
      return static_cast<int>(rx);
    }
  }
  return -1;
}

int fd_count(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) {
    return -1;
  }
  int n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) {
      return -1;
    }
    ++n;
  }
  return n;
}

void ServerProcess::send_signal(int sig) const {
  if (pid_ > 0 && !status_.has_value()) {
    ::kill(pid_, sig);
  }
}

bool ServerProcess::running() {
  if (pid_ <= 0 || status_.has_value()) {
    return false;
  }
  int raw = 0;
  pid_t r = ::waitpid(pid_, &raw, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(raw);
    return false;
  }
  return r == 0;
}

std::optional<int> ServerProcess::wait_exit(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() >= deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(Millis{5});
  }
  if (status_.has_value()) {
    reap_and_join();
  }
  return status_;
}

int ServerProcess::stop(Millis timeout) {
  if (pid_ <= 0) {
    return -1;
  }
  // Another binary under test (make test's ThreadSanitizer build) drains several times slower;
  // it still exits within its 10 s drain timeout, or the stop fails.
  if (std::getenv("GEARBOX_TEST_BINARY") != nullptr) {
    timeout = std::max(timeout, Millis{12'000});
  }
  if (!status_.has_value()) {
    send_signal(SIGTERM);
    if (!wait_exit(timeout).has_value()) {
      ::kill(-pid_, SIGKILL);
      int raw = 0;
      ::waitpid(pid_, &raw, 0);
      status_ = decode_status(raw);
      ADD_FAILURE() << "server (pid " << pid_ << ") did not exit within " << timeout.count()
                    << " ms of SIGTERM; killed. Log:\n"
                    << log_text();
    }
  }
  reap_and_join();
  return *status_;
}

int admin_port(const ServerProcess& server, Millis timeout) {
  constexpr std::string_view kNeedle = "admin endpoint on 127.0.0.1:";
  if (!server.wait_for_log(kNeedle, timeout)) {
    return 0;
  }
  for (const std::string& line : server.log_lines()) {
    std::size_t at = line.find(kNeedle);
    if (at != std::string::npos) {
      return std::atoi(line.c_str() + at + kNeedle.size());
    }
  }
  return 0;
}

}  // namespace gearbox::test
