// Socket helpers: address parsing and listeners that report the port they really bound.
#include "backends/common/socket.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

namespace gearbox::backends {
namespace {

TEST(Socket, ParsesIpv4AndBracketedIpv6) {
  core::Endpoint ep;
  std::string error;
  ASSERT_TRUE(parse_endpoint("127.0.0.1:8080", &ep, &error)) << error;
  EXPECT_EQ(ep.addr.ss_family, AF_INET);
  EXPECT_EQ(ep.text, "127.0.0.1:8080");
  ASSERT_TRUE(parse_endpoint("[::1]:443", &ep, &error)) << error;
  EXPECT_EQ(ep.addr.ss_family, AF_INET6);
  EXPECT_EQ(ep.text, "[::1]:443");
  ASSERT_TRUE(parse_endpoint("localhost:80", &ep, &error)) << error;
  EXPECT_EQ(ep.text, "127.0.0.1:80");
}

TEST(Socket, RejectsMalformedAddressesWithOneLine) {
  core::Endpoint ep;
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "[::1:80", "[::1]80",
                          "example.com:80", "1.2.3.4:8x"}) {
    std::string error;
    EXPECT_FALSE(parse_endpoint(bad, &ep, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
    EXPECT_EQ(error.find('\n'), std::string::npos);
  }
}

TEST(Socket, ListenerOnPortZeroReportsTheBoundPortAndIsNonBlocking) {
  for (const char* addr : {"127.0.0.1:0", "[::1]:0"}) {
    std::string error;
    auto listener = open_listener(addr, 16, true, &error);
    // No skip: an IPv6 listener is the function under test. A host without ::1 on loopback
    // fails here; `make deps` enables it (sysctl net.ipv6.conf.lo.disable_ipv6=0).
    ASSERT_TRUE(listener.has_value()) << addr << ": " << error;
    EXPECT_NE(listener->address.substr(listener->address.size() - 2), ":0") << listener->address;
    core::Endpoint bound;
    ASSERT_TRUE(parse_endpoint(listener->address, &bound, &error)) << error;
    EXPECT_NE(bound.addr.ss_family == AF_INET
                  ? reinterpret_cast<sockaddr_in&>(bound.addr).sin_port
                  : reinterpret_cast<sockaddr_in6&>(bound.addr).sin6_port,
              0);
    EXPECT_NE(::fcntl(listener->fd, F_GETFL) & O_NONBLOCK, 0);
    Accepted none = accept_client(listener->fd);
    EXPECT_EQ(none.fd, -1);
    EXPECT_EQ(none.err, EAGAIN);

    bool in_progress = false;
    int client = connect_nonblocking(bound, &in_progress);
    ASSERT_GE(client, 0);
    pollfd pfd{listener->fd, POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
    Accepted a = accept_client(listener->fd);
    ASSERT_GE(a.fd, 0);
    EXPECT_EQ(address_text(a.peer), std::string(addr) == "[::1]:0" ? "::1" : "127.0.0.1");
    EXPECT_EQ(connect_result(client), 0);
    ::close(a.fd);
    ::close(client);
    ::close(listener->fd);
  }
}

TEST(Socket, SecondListenerOnTheSamePortFailsWithoutReuseport) {
  std::string error;
  auto first = open_listener("127.0.0.1:0", 16, false, &error);
  ASSERT_TRUE(first.has_value()) << error;
  auto second = open_listener(first->address, 16, false, &error);
  EXPECT_FALSE(second.has_value());
  EXPECT_NE(error.find("bind"), std::string::npos) << error;
  ::close(first->fd);
}

}  // namespace
}  // namespace gearbox::backends
