// Graceful drain as a load balancer sees it, over every backend: once SIGTERM arrives, a new
// connection is refused at once (every process, prefork's master and each worker, stops its
// listener), while a request already in flight still gets its whole answer.
#include <gtest/gtest.h>

#include "tests/conformance/conformance.hpp"
#include "tests/fault/drain.hpp"

namespace gearbox::test {
namespace {

class DrainTest : public ConformanceTest {};
GEARBOX_CONFORMANCE_SUITE(DrainTest);

TEST_P(DrainTest, NewConnectionIsRefusedDuringDrainWhileInFlightRequestCompletes) {
  ASSERT_TRUE(start_server({"--drain-timeout", "5s"}));
  // Served before the signal, so that prefork has workers running besides the busy one.
  ASSERT_EQ(exchange(port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
  expect_new_connections_refused_during_drain(server_);
}

}  // namespace
}  // namespace gearbox::test
