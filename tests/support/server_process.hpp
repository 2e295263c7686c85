// Runs the real gearbox binary for integration tests: a fixture that starts it on an ephemeral
// port, reads the bound port from its first stderr line, keeps every log line, stops it by PID,
// and checks the log for unexpected error lines (the nginx-tests habit); plus a run-to-completion
// helper for --check and bad-flag cases.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace gearbox::test {

using Millis = std::chrono::milliseconds;

// Outcome of a process run to completion.
struct ProcessResult {
  // Exit code when the process exited; -N when it was killed by signal N.
  int status = -1;
  bool timed_out = false;              // it did not finish in time and was killed
  std::string out;                     // everything written to stdout
  std::vector<std::string> err_lines;  // stderr, split into lines (no trailing '\n')
  std::string err_text() const;        // err_lines joined with '\n'
};

// Runs `argv` (argv[0] is the program path) with stdin from /dev/null, capturing stdout and
// stderr; kills the process group after `timeout`. Never throws; a failed exec gives status 127.
ProcessResult run_process(const std::vector<std::string>& argv, Millis timeout = Millis{10'000});

// Raises this process's RLIMIT_NOFILE soft limit to at least `want` (servers started afterwards
// inherit it); a GoogleTest failure when the hard limit is lower.
void raise_fd_limit(unsigned long want);

// The number of a /proc/<pid>/status field ("Threads:", "VmRSS:" in KiB); -1 when unreadable.
long proc_status(pid_t pid, std::string_view field);

// The port of `gearbox: info: admin endpoint on 127.0.0.1:PORT ...` in the server's log, waiting
// up to `timeout` for the line; 0 when it does not come.
class ServerProcess;
int admin_port(const ServerProcess& server, Millis timeout = Millis{5'000});

// True for a log line at level error or worse (`gearbox: error: ...`, crit, alert, emerg, fatal)
// and for sanitizer reports; these must be allowed explicitly by a test.
bool is_error_line(std::string_view line);

// Open descriptors of `pid` (entries of /proc/PID/fd); -1 when it is gone.
int fd_count(pid_t pid);

// Connections completed by the kernel but not yet accepted on the IPv4 listener bound to
// 127.0.0.1:port (rx_queue of a LISTEN row in /proc/net/tcp); -1 when there is none.
int listen_queue(int port);

// Fields 3 (state), 4 (ppid) and 14 + 15 (utime + stime) of /proc/PID/stat.
struct ProcStat {
  char state = 0;
  pid_t ppid = 0;
  long cpu_ticks = 0;
};

// One running server. Not copyable; the destructor kills (SIGKILL, whole process group) and
// reaps a server that is still running, so a failing test never leaks a process.
class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `binary args...` (the child gets its own process group, stdin /dev/null, stdout
  // /dev/null, stderr to a pipe read by a thread) and waits up to `ready_timeout` for the first
  // stderr line `gearbox: listening on HOST:PORT (backend NAME, mode MODE)`. On failure (the
  // line does not come, is malformed, or the process exits) records a GoogleTest failure
  // holding the captured log, and returns false. Call once per object.
  bool start(const std::string& binary, const std::vector<std::string>& args,
             Millis ready_timeout = Millis{10'000});

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Fields of the "listening on" line.
  const std::string& host() const { return host_; }
  const std::string& backend() const { return backend_; }
  const std::string& mode() const { return mode_; }
  const std::string& first_line() const { return first_line_; }

  // Every stderr line so far (the first line included), in order.
  std::vector<std::string> log_lines() const;
  // The same, joined with '\n' (for failure messages).
  std::string log_text() const;
  // Waits until some log line contains `needle`; false on timeout.
  bool wait_for_log(std::string_view needle, Millis timeout) const;
  // Error-level lines (see is_error_line) that contain none of the `allowed` substrings.
  std::vector<std::string> unexpected_errors(const std::vector<std::string>& allowed = {}) const;

  // Lines after the first that are not log lines of the form `gearbox: <level>: ...`.
  std::vector<std::string> untagged_lines() const;

  // Sends `sig` to the server's PID (not its group). No-op once it has been reaped.
  void send_signal(int sig) const;
  // Waits for the process to exit by itself and reaps it. Returns its status (exit code, or -N
  // for signal N), or nullopt when it is still running after `timeout`.
  std::optional<int> wait_exit(Millis timeout);
  // SIGTERM to the PID, then waits up to `timeout`. If it is still running: SIGKILL to the
  // process group, a GoogleTest failure, and -SIGKILL is returned. Returns the exit status.
  // Calling it again returns the status already collected.
  int stop(Millis timeout = Millis{5'000});
  // True while the process has not been reaped and has not exited.
  bool running();
  // CPU time (user + system) used so far by the server and every live descendant (prefork
  // workers), from /proc; clock-tick (10 ms) resolution.
  Millis cpu_time() const;
  // Live (not zombie) child processes: prefork's workers.
  std::vector<pid_t> children() const;
  // Open descriptors of the server and every live descendant, summed (/proc/PID/fd).
  int open_fds() const;
  // Status once reaped (exit code or -N for signal N).
  std::optional<int> exit_status() const { return status_; }

 private:
  // The server and its descendants, with their /proc/PID/stat fields.
  std::vector<std::pair<pid_t, ProcStat>> tree() const;
  void reader_loop(int fd);
  void reap_and_join();

  pid_t pid_ = -1;
  int port_ = 0;
  std::string host_, backend_, mode_, first_line_;
  std::optional<int> status_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<std::string> lines_;
  bool log_closed_ = false;
  bool stop_reader_ = false;
  std::thread reader_;
};

}  // namespace gearbox::test
