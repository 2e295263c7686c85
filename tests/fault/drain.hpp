// The drain check shared by the fault suites: with a slow request in flight, SIGTERM; 0.3 s
// later a new connection must be refused (not accepted, then reset), the in-flight request
// must still get its whole answer, and the server must exit 0.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/support/http_client.hpp"
#include "tests/support/server_process.hpp"

namespace gearbox::test {

inline void expect_new_connections_refused_during_drain(ServerProcess& server) {
  using namespace std::chrono_literals;
  using Clock = std::chrono::steady_clock;
  Socket busy = Socket::connect(server.port());
  ASSERT_TRUE(busy.valid()) << busy.error();
  auto sent = Clock::now();
  ASSERT_TRUE(busy.send_all("GET /delay/1500 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(200ms);
  server.send_signal(SIGTERM);
  std::this_thread::sleep_for(300ms);

  Socket late = Socket::connect(server.port(), 1s);
  EXPECT_FALSE(late.valid()) << "a connection made 0.3 s after SIGTERM was accepted";
  EXPECT_NE(late.error().find("refused"), std::string::npos) << late.error();

  HttpResponse r = busy.read_response(5s);
  ASSERT_TRUE(r.ok()) << "the in-flight request did not finish during drain: " << r.error
                      << "\nlog:\n"
                      << server.log_text();
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(Clock::now() - sent, 1400ms);
  auto status = server.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << server.log_text();
  EXPECT_EQ(*status, 0) << server.log_text();
}

}  // namespace gearbox::test
