// SIGHUP under load, over every backend: the upstream list changes from A to B while clients
// keep sending on keep-alive connections (and reconnecting when told to). No request fails, no
// connection is refused, B receives traffic, and once the old connections are gone only B does.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/proxy/proxy_fixture.hpp"
#include "tests/support/files.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ProxyReloadTest : public ProxyTest {
 protected:
  void write_config(int upstream_port) {
    std::ofstream out(dir_.path() + "/gearbox.toml", std::ios::trunc);
    out << "mode = \"proxy\"\nlisten = \"127.0.0.1:0\"\n"
        << "[upstreams.app]\nservers = [\"127.0.0.1:" << upstream_port << "\"]\n"
        << "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n";
  }

  TempDir dir_;
};

// Clients that each keep a connection alive and send GETs back to back until stopped; a
// response with Connection: close (or a close after it) makes them reconnect. Anything else
// that goes wrong is a failure.
class SteadyLoad {
 public:
  SteadyLoad(int port, int clients) {
    for (int i = 0; i < clients; ++i) {
      threads_.emplace_back([this, port] { client(port); });
    }
  }
  ~SteadyLoad() { stop(); }

  void stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
  }
  int ok() const { return ok_.load(); }
  int failed() const { return failed_.load(); }
  int reconnects() const { return reconnects_.load(); }
  std::string first_failure() const {
    std::lock_guard lock(mu_);
    return first_failure_;
  }

 private:
  void fail(const std::string& why) {
    failed_.fetch_add(1);
    std::lock_guard lock(mu_);
    if (first_failure_.empty()) {
      first_failure_ = why;
    }
  }

  void client(int port) {
    Socket s;
    while (!stop_) {
      if (!s.valid()) {
        s = Socket::connect(port);
        if (!s.valid()) {
          fail("connect: " + s.error());
          std::this_thread::sleep_for(5ms);
          continue;
        }
      }
      if (!s.send_all("GET /load HTTP/1.1\r\nHost: app\r\n\r\n")) {
        fail("send: " + s.error());
        s = Socket();
        continue;
      }
      HttpResponse r = s.read_response(5s);
      if (!r.ok() || r.status != 200) {
        fail(r.ok() ? "status " + std::to_string(r.status) : r.error);
        s = Socket();
        continue;
      }
      ok_.fetch_add(1);
      if (r.has_connection_token("close")) {
        reconnects_.fetch_add(1);
        s = Socket();
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0};
  std::atomic<int> failed_{0};
  std::atomic<int> reconnects_{0};
  mutable std::mutex mu_;
  std::string first_failure_;
  std::vector<std::thread> threads_;
};

TEST_P(ProxyReloadTest, UpstreamListChangedUnderLoadWithoutAFailedRequest) {
  ASSERT_FALSE(dir_.path().empty());
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  ASSERT_TRUE(start_echo_upstream(echo_b_));
  write_config(echo_a_.port());
  ASSERT_TRUE(start_proxy({}, {"--config", dir_.path() + "/gearbox.toml"}));

  SteadyLoad load(port(), 4);
  std::this_thread::sleep_for(400ms);
  const int before = load.ok();
  EXPECT_GT(before, 0) << load.first_failure();
  EXPECT_EQ(served(echo_b_), 0);

  write_config(echo_b_.port());
  server_.send_signal(SIGHUP);
  ASSERT_TRUE(server_.wait_for_log(GetParam() == "prefork" ? "in force" : "read again", 5s))
      << server_.log_text();
  std::this_thread::sleep_for(800ms);
  load.stop();

  EXPECT_EQ(load.failed(), 0) << "first failure: " << load.first_failure();
  EXPECT_GT(load.ok(), before);
  EXPECT_GE(load.reconnects(), 1) << "the old connections were told to reconnect";
  EXPECT_GT(wait_served(echo_b_, 1), 0) << "the new upstream receives traffic";

  // Every connection from before the reload is gone: what comes now reaches B only.
  const int a_before = wait_served(echo_a_, 1 << 30, 300ms);
  const int b_before = served(echo_b_);
  for (int i = 0; i < 10; ++i) {
    HttpResponse r = exchange(port(), "GET /after HTTP/1.1\r\nHost: app\r\n\r\n");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
  }
  EXPECT_EQ(wait_served(echo_b_, b_before + 10), b_before + 10);
  EXPECT_EQ(served(echo_a_), a_before) << "the old upstream gets nothing new";
}

GEARBOX_CONFORMANCE_SUITE(ProxyReloadTest);

}  // namespace
}  // namespace gearbox::test
