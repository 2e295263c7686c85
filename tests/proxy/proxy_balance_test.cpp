// Balancing and health through real sockets: active health checks take a server that answers
// errors out of rotation, and least-connections steers new requests away from a busy server.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/proxy/proxy_fixture.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ProxyBalanceTest : public ProxyTest {
 protected:
  // Starts the proxy from a TOML file holding `toml` (written to a temp file, removed after).
  bool start_with_config(const std::string& toml) {
    std::filesystem::path file =
        std::filesystem::temp_directory_path() /
        ("gearbox-balance-" + std::to_string(::getpid()) + "-" + GetParam() + ".toml");
    {
      std::ofstream out(file);
      out << "mode = \"proxy\"\nlisten = \"127.0.0.1:0\"\n" << toml;
    }
    bool started = start_proxy({}, {"--config", file.string()});
    std::filesystem::remove(file);
    return started;
  }
};

TEST_P(ProxyBalanceTest, ActiveHealthCheckTakesAnErroringServerOutOfRotation) {
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  // Accepts connections and answers 503 to everything, /health included: passive health (which
  // counts connect failures) would keep it in rotation; only the active check can see it.
  ASSERT_TRUE(fake_.start(
      fixed_response_handler("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")));
  ASSERT_TRUE(start_with_config(
      "[upstreams.app]\nservers = [\"127.0.0.1:" + std::to_string(echo_a_.port()) +
      "\", \"127.0.0.1:" + std::to_string(fake_.port()) +
      "\"]\nhealth_check = { path = \"/health\", interval = \"100ms\" }\n"
      "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n"));
  // Give the checker time to probe both servers.
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (fake_.requests() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 20; ++i) {
    HttpResponse r = exchange(port(), "GET /work HTTP/1.1\r\nHost: app\r\n\r\n");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200) << "request " << i << ": " << r.raw_head;
  }
  int work_on_fake = 0;
  int health_on_fake = 0;
  for (const std::string& line : fake_.request_lines()) {
    work_on_fake += line.starts_with("GET /work ") ? 1 : 0;
    health_on_fake += line.starts_with("GET /health ") ? 1 : 0;
  }
  EXPECT_EQ(work_on_fake, 0);
  EXPECT_GE(health_on_fake, 1);
}

TEST_P(ProxyBalanceTest, LeastConnectionsAvoidsTheBusyServer) {
  if (GetParam() == std::string("prefork")) {
    // Each worker process balances with its own counters (no shared mutable state but the
    // scoreboard), like nginx workers without a `zone`: a request in another worker is unseen.
    GTEST_SKIP() << "least-connections is per worker process under prefork";
  }
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  ASSERT_TRUE(start_echo_upstream(echo_b_));
  ASSERT_TRUE(start_proxy({echo_a_.port(), echo_b_.port()}, {"--balance", "least-conn"}));
  // One slow request holds a connection on one of the two servers...
  std::thread slow([&] {
    HttpResponse r = exchange(port(), "GET /delay/1500 HTTP/1.1\r\nHost: app\r\n\r\n", 5000ms);
    EXPECT_EQ(r.status, 200) << r.error;
  });
  std::this_thread::sleep_for(300ms);
  // ...so every quick request meanwhile goes to the other one (round robin would split them).
  for (int i = 0; i < 10; ++i) {
    HttpResponse r = exchange(port(), "GET /quick HTTP/1.1\r\nHost: app\r\n\r\n");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
  }
  // Access lines reach the upstreams' logs a moment after the responses.
  auto deadline = std::chrono::steady_clock::now() + 1s;
  while (served(echo_a_) + served(echo_b_) < 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  const int a_now = served(echo_a_);
  const int b_now = served(echo_b_);
  slow.join();
  EXPECT_TRUE((a_now == 10 && b_now == 0) || (a_now == 0 && b_now == 10))
      << "quick requests served: a " << a_now << ", b " << b_now;
}

GEARBOX_CONFORMANCE_SUITE(ProxyBalanceTest);

}  // namespace
}  // namespace gearbox::test
