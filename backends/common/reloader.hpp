// SIGHUP reloads the configuration (nginx's `-s reload`): a thread of main reads the flags and
// the file again, validates them, refuses what a reload cannot change, and hands the result to
// the backend, which serves new connections with it while the old ones finish.
#pragma once

#include <signal.h>

#include <string>
#include <thread>
#include <vector>

#include "server/backend.hpp"
#include "server/config.hpp"

namespace gearbox::backends {

// The signals that steer the server: SIGTERM and SIGINT (drain), SIGHUP (reload), SIGUSR1
// (reopen the access log). main blocks them before it starts any thread, so every thread is
// born with them blocked, and the reloader's thread alone takes them, while it waits: a signal
// never interrupts a serving thread's system call, and never lands on a thread that is about
// to exit (ThreadSanitizer defers a handler to the thread's next intercepted call, so there it
// was lost: a server that never heard its SIGTERM).
sigset_t control_signals();

class Reloader {
 public:
  // `argv`: main's, read again at each reload (flags win over the file, as at start-up).
  // `running`: the start-up configuration (what cannot change is compared with it).
  Reloader(int argc, char** argv, const core::Config& running, core::Backend& backend);
  ~Reloader();  // stop()
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Installs the SIGHUP handler and starts the thread that takes control_signals(); it reloads
  // until `drain_fd` turns readable (no reload during a drain), and takes the signals until
  // stop(). False (logged) when it could not.
  bool start(int drain_fd);
  void stop();

  // One reload, on the calling thread: returns "" when `backend` took the new configuration,
  // else the one line logged (naming the file or flag and the key).
  std::string reload_now();

 private:
  std::vector<std::string> args_;
  const core::Config& running_;
  core::Backend& backend_;
  std::thread thread_;
  int stop_[2] = {-1, -1};
};

}  // namespace gearbox::backends
