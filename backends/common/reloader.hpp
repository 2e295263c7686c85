// SIGHUP reloads the configuration (nginx's `-s reload`): a thread of main reads the flags and
// the file again, validates them, refuses what a reload cannot change, and hands the result to
// the backend, which serves new connections with it while the old ones finish.
#pragma once

#include <string>
#include <thread>
#include <vector>

#include "server/backend.hpp"
#include "server/config.hpp"

namespace gearbox::backends {

class Reloader {
 public:
  // `argv`: main's, read again at each reload (flags win over the file, as at start-up).
  // `running`: the start-up configuration (what cannot change is compared with it).
  Reloader(int argc, char** argv, const core::Config& running, core::Backend& backend);
  ~Reloader();  // stop()
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Installs the SIGHUP handler and starts the thread; it ends when `drain_fd` turns readable
  // (no reload during a drain) or at stop(). False (logged) when it could not.
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
