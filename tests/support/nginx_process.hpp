// Runs Debian's nginx (/usr/sbin/nginx) as a test upstream: renders a config template into a
// fresh temp dir, starts nginx in the foreground on an ephemeral 127.0.0.1 port, stops it by PID.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>

namespace gearbox::test {

// One nginx process (daemon off, master_process off). Not copyable; the destructor stops a
// running nginx (SIGKILL if SIGTERM is not enough) and removes the temp dir.
class NginxProcess {
 public:
  static constexpr const char* kBinary = "/usr/sbin/nginx";

  NginxProcess() = default;
  ~NginxProcess();
  NginxProcess(const NginxProcess&) = delete;
  NginxProcess& operator=(const NginxProcess&) = delete;

  // True when kBinary exists and is executable.
  static bool available();

  // Creates the temp dir, then, up to five times: picks a free port (bind 127.0.0.1:0, close),
  // writes `config_template` with every @PORT@ replaced by the port and every @DIR@ by the temp
  // dir to DIR/nginx.conf, runs `nginx -p DIR/ -c DIR/nginx.conf -e DIR/error.log`, and waits
  // up to `ready_timeout` until the port accepts connections. A try whose nginx exits (say, the
  // port was taken meanwhile) is retried on another port. False, with a GoogleTest failure
  // holding error.log, when every try fails. Call once per object.
  bool start(std::string_view config_template,
             std::chrono::milliseconds ready_timeout = std::chrono::milliseconds{5000});

  // Writes `content` to DIR/`relative`, creating the directories on the way. Usable before
  // or after start(); false on error.
  bool write_file(std::string_view relative, std::string_view content);

  // SIGTERM to the PID and reap (SIGKILL after `timeout`). Returns the exit status (code or -N).
  int stop(std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  // Contents of DIR/error.log (for failure messages).
  std::string error_log() const;

 private:
  bool make_dir();

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

}  // namespace gearbox::test
