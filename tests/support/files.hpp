// Files the integration tests read while a server writes them: a temporary directory that cleans
// up after itself, and waiting until a log file holds enough lines.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace gearbox::test {

// A fresh directory under /tmp (empty path() when mkdtemp failed), removed with its contents.
class TempDir {
 public:
  TempDir() {
    char dir[] = "/tmp/gearbox-test-XXXXXX";
    if (::mkdtemp(dir) != nullptr) {
      path_ = dir;
    }
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::filesystem::remove_all(path_);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::vector<std::string> file_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

// The lines of `path` once it holds at least `n`, or what it holds when `timeout` is up.
inline std::vector<std::string> wait_for_lines(const std::string& path, std::size_t n,
                                               std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  std::vector<std::string> lines = file_lines(path);
  while (lines.size() < n && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    lines = file_lines(path);
  }
  return lines;
}

}  // namespace gearbox::test
