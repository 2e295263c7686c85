// Running out of file descriptors: accept(2) fails with EMFILE while connections wait in the
// backlog. The server must not spin on the ready listener (nginx pauses accepting), and must
// serve the waiting connections once descriptors are free again.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/server_process.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class AcceptLimitTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AcceptLimitTest, OutOfDescriptorsDoesNotSpinAndRecovers) {
  if (GetParam() == "prefork") {
    GTEST_SKIP() << "a prefork worker holds one connection: clients cannot exhaust its fds";
  }
  ServerProcess server;
  // prlimit sets the limit, then execs gearbox in the same process.
  ASSERT_TRUE(
      server.start("/usr/bin/prlimit", {"--nofile=40:40", gearbox_binary(), "--backend", GetParam(),
                                        "--listen", "127.0.0.1:0", "--log-level", "warn"}));
  // More connections than descriptors: some are accepted, the rest wait in the backlog.
  std::vector<Socket> clients;
  for (int i = 0; i < 60; ++i) {
    Socket s = Socket::connect(server.port());
    ASSERT_TRUE(s.valid()) << s.error();
    ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
    clients.push_back(std::move(s));
  }
  ASSERT_TRUE(server.wait_for_log("accept", 3s)) << server.log_text();
  const Millis cpu_before = server.cpu_time();
  std::this_thread::sleep_for(1500ms);
  const Millis burnt = server.cpu_time() - cpu_before;
  EXPECT_LT(burnt.count(), 300) << "the server spun while out of descriptors";
  // Free descriptors: the first 45 clients (every accepted one among them: the server's own
  // descriptors leave it fewer than 40 for clients) read their answer if any and leave.
  int answered = 0;
  for (int i = 0; i < 45; ++i) {
    HttpResponse r = clients[i].read_response(200ms);
    answered += r.ok() && r.status == 200 ? 1 : 0;
    clients[i].close();
  }
  EXPECT_GT(answered, 0);
  // Every remaining connection is served now.
  for (int i = 45; i < 60; ++i) {
    HttpResponse r = clients[i].read_response(5s);
    ASSERT_TRUE(r.ok()) << "client " << i << ": " << r.error;
    EXPECT_EQ(r.status, 200);
  }
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

INSTANTIATE_TEST_SUITE_P(Backends, AcceptLimitTest, ::testing::ValuesIn(conformance_backends()),
                         backend_test_name);

}  // namespace
}  // namespace gearbox::test
