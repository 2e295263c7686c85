// Tests for server/log.cpp: the line format, level filtering, access lines, one line per call
// (newlines flattened) and whole lines under concurrent writers. Output is captured in a pipe.
#include "server/log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace gearbox::core {
namespace {

// Points the log at a pipe for the test's lifetime; restores level, access flag and fd after.
class LogCapture {
 public:
  LogCapture() {
    EXPECT_EQ(::pipe2(fds_, O_CLOEXEC | O_NONBLOCK), 0);
    ::fcntl(fds_[1], F_SETPIPE_SZ, 1 << 20);
    previous_fd_ = set_log_fd(fds_[1]);
    previous_level_ = log_level();
    previous_access_ = access_log_enabled();
  }
  ~LogCapture() {
    set_log_fd(previous_fd_);
    set_log_level(previous_level_);
    set_access_log(previous_access_);
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  std::string take() {
    std::string out;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = ::read(fds_[0], buffer, sizeof buffer)) > 0) {
      out.append(buffer, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  int fds_[2] = {-1, -1};
  int previous_fd_ = 2;
  LogLevel previous_level_ = LogLevel::kInfo;
  bool previous_access_ = false;
};

TEST(LogTest, LineFormat) {
  LogCapture capture;
  set_log_level(LogLevel::kDebug);
  log_error("upstream %s refused", "127.0.0.1:9001");
  log_warn("w %d", 1);
  log_info("i");
  log_debug("d %s", "x");
  log_line(LogLevel::kError, "plain text");
  log_plain("listening on 127.0.0.1:1 (backend thread, mode echo)");
  EXPECT_EQ(capture.take(),
            "gearbox: error: upstream 127.0.0.1:9001 refused\n"
            "gearbox: warn: w 1\n"
            "gearbox: info: i\n"
            "gearbox: debug: d x\n"
            "gearbox: error: plain text\n"
            "gearbox: listening on 127.0.0.1:1 (backend thread, mode echo)\n");
}

TEST(LogTest, LevelFiltersLowerLevels) {
  LogCapture capture;
  set_log_level(LogLevel::kWarn);
  EXPECT_TRUE(log_enabled(LogLevel::kError));
  EXPECT_TRUE(log_enabled(LogLevel::kWarn));
  EXPECT_FALSE(log_enabled(LogLevel::kInfo));
  log_info("hidden");
  log_debug("hidden");
  log_line(LogLevel::kInfo, "hidden");
  log_warn("shown");
  log_plain("always");
  EXPECT_EQ(capture.take(), "gearbox: warn: shown\ngearbox: always\n");

  set_log_level(LogLevel::kError);
  log_warn("hidden");
  log_error("shown");
  EXPECT_EQ(capture.take(), "gearbox: error: shown\n");
}

TEST(LogTest, AccessLinesOnlyWhenEnabled) {
  LogCapture capture;
  set_log_level(LogLevel::kError);
  set_access_log(false);
  log_access("127.0.0.1 \"GET /\" 200 5 0ms");
  EXPECT_EQ(capture.take(), "");
  set_access_log(true);
  log_access("127.0.0.1 \"GET /\" %d %d 0ms", 200, 5);
  EXPECT_EQ(capture.take(), "gearbox: access: 127.0.0.1 \"GET /\" 200 5 0ms\n");
}

TEST(LogTest, NewlinesInAMessageStayOnOneLine) {
  LogCapture capture;
  set_log_level(LogLevel::kInfo);
  log_info("two\nlines\r");
  log_line(LogLevel::kInfo, "a\nb");
  EXPECT_EQ(capture.take(), "gearbox: info: two lines \ngearbox: info: a b\n");
}

TEST(LogTest, LongMessagesAreWrittenWhole) {
  LogCapture capture;
  set_log_level(LogLevel::kInfo);
  std::string long_text(5000, 'x');
  log_info("%s!", long_text.c_str());
  log_line(LogLevel::kInfo, long_text);
  EXPECT_EQ(capture.take(),
            "gearbox: info: " + long_text + "!\ngearbox: info: " + long_text + "\n");
}

TEST(LogTest, ParseAndNameLevels) {
  for (LogLevel level : {LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo, LogLevel::kDebug}) {
    EXPECT_EQ(parse_log_level(log_level_name(level)), level);
  }
  EXPECT_EQ(log_level_name(LogLevel::kWarn), "warn");
  EXPECT_EQ(parse_log_level("WARN"), std::nullopt);
  EXPECT_EQ(parse_log_level("trace"), std::nullopt);
}

TEST(LogTest, ConcurrentWritersNeverInterleaveWithinALine) {
  LogCapture capture;
  set_log_level(LogLevel::kInfo);
  constexpr int kThreads = 4;
  constexpr int kLines = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      std::string payload(100, static_cast<char>('a' + t));
      for (int i = 0; i < kLines; ++i) {
        log_info("%s", payload.c_str());
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  std::istringstream lines(capture.take());
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    ASSERT_EQ(line.size(), std::string("gearbox: info: ").size() + 100) << line;
    char c = line.back();
    EXPECT_EQ(line.substr(15), std::string(100, c));
    ++count;
  }
  EXPECT_EQ(count, kThreads * kLines);
}

}  // namespace
}  // namespace gearbox::core
