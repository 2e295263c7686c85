// nginx as a test upstream: config rendering, start on a free port with retries, stop by PID.
#include "tests/support/nginx_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;

// A port that was free a moment ago: bind 127.0.0.1:0, read it, close.
int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return 0;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

int decode_status(int raw) {
  if (WIFEXITED(raw)) {
    return WEXITSTATUS(raw);
  }
  return WIFSIGNALED(raw) ? -WTERMSIG(raw) : -1;
}

}  // namespace

NginxProcess::~NginxProcess() {
  if (pid_ > 0) {
    stop(std::chrono::milliseconds{2000});
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

bool NginxProcess::available() {
  return ::access(kBinary, X_OK) == 0;
}

bool NginxProcess::make_dir() {
  if (!dir_.empty()) {
    return true;
  }
  std::string templ = (std::filesystem::temp_directory_path() / "gearbox-nginx-XXXXXX").string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    return false;
  }
  dir_ = buf.data();
  return true;
}

bool NginxProcess::write_file(std::string_view relative, std::string_view content) {
  if (!make_dir()) {
    return false;
  }
  std::filesystem::path path = std::filesystem::path(dir_) / std::string(relative);
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  return static_cast<bool>(out);
}

std::string NginxProcess::error_log() const {
  std::ifstream in(dir_ + "/error.log", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool NginxProcess::start(std::string_view config_template,
                         std::chrono::milliseconds ready_timeout) {
  if (!make_dir()) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return false;
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    int port = pick_free_port();
    if (port == 0) {
      continue;
    }
    std::string config = replace_all(std::string(config_template), "@PORT@", std::to_string(port));
    config = replace_all(std::move(config), "@DIR@", dir_);
    if (!write_file("nginx.conf", config)) {
      ADD_FAILURE() << "cannot write " << dir_ << "/nginx.conf";
      return false;
    }
    std::vector<std::string> args = {
        kBinary, "-p", dir_ + "/", "-c", dir_ + "/nginx.conf", "-e", dir_ + "/error.log"};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      return false;
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      int null_fd = ::open("/dev/null", O_RDWR);
      if (null_fd >= 0) {
        ::dup2(null_fd, 0);
        ::dup2(null_fd, 1);
        ::dup2(null_fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    auto deadline = Clock::now() + ready_timeout;
    bool exited = false;
    while (Clock::now() < deadline) {
      int raw = 0;
      if (::waitpid(pid_, &raw, WNOHANG) == pid_) {
        exited = true;
        pid_ = -1;
        break;
      }
      if (accepts(port)) {
        port_ = port;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    if (!exited) {
      stop(std::chrono::milliseconds{1000});
      break;
    }
  }
  ADD_FAILURE() << "nginx did not start; error.log:\n" << error_log();
  return false;
}

int NginxProcess::stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) {
    return -1;
  }
  ::kill(pid_, SIGTERM);
  auto deadline = Clock::now() + timeout;
  int raw = 0;
  while (Clock::now() < deadline) {
    pid_t got = ::waitpid(pid_, &raw, WNOHANG);
    if (got == pid_) {
      pid_ = -1;
      return decode_status(raw);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  ::kill(-pid_, SIGKILL);
  ::waitpid(pid_, &raw, 0);
  pid_ = -1;
  ADD_FAILURE() << "nginx did not stop on SIGTERM";
  return decode_status(raw);
}

}  // namespace gearbox::test
