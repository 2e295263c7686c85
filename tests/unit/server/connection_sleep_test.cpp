// A connection put to sleep between requests (Connection::sleep/wake, as the ring driver does
// for an idle keep-alive connection): it answers as one that never slept, sleeps only when it
// holds nothing, keeps its idle deadline and its place in the metrics, and still drains.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <netinet/in.h>

#include "server/config_load.hpp"
#include "server/metrics.hpp"
#include "tests/support/core_harness.hpp"
#include "tests/support/proxy_config.hpp"

namespace gearbox {
namespace {

using test::CoreHarness;
using namespace std::chrono_literals;

const std::string kGet = "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";

// A connection that never sleeps and one put to sleep whenever it can, fed the same script.
struct AwakeAndSleepy {
  CoreHarness awake{core::Config{}, true};
  CoreHarness sleepy{core::Config{}, true};
  AwakeAndSleepy() { sleepy.sleep_when_idle = true; }
  template <class Script>
  void run(Script script) {
    script(awake);
    script(sleepy);
  }
};

// Two requests, one after the other's answer: the sleeping connection's bytes equal those of
// one that never slept, and it slept after each answer.
TEST(ConnectionSleep, SleepsAfterEachAnswerAndAnswersTheNextAlike) {
  AwakeAndSleepy both;
  both.run([](CoreHarness& h) {
    h.send(kGet);
    h.run();
    h.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    h.run();
  });
  const CoreHarness& awake = both.awake;
  const CoreHarness& sleepy = both.sleepy;
  EXPECT_EQ(sleepy.output(), awake.output());
  EXPECT_EQ(sleepy.sleeps(), 2);
  EXPECT_TRUE(sleepy.asleep());
  EXPECT_FALSE(sleepy.closed());
  EXPECT_EQ(awake.sleeps(), 0);
}

// Split at every byte: a head that arrives in pieces is never slept on (its bytes are kept in
// the input buffer), and the answers are those of a connection that never slept.
TEST(ConnectionSleep, NeverSleepsMidHeadWhateverTheSplit) {
  const std::string in = kGet + "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
  CoreHarness whole({}, true);
  whole.send(in);
  whole.run();
  for (std::size_t piece = 1; piece <= in.size(); ++piece) {
    CoreHarness h({}, true);
    h.sleep_when_idle = true;
    h.piece = piece;
    for (std::size_t at = 0; at < in.size(); at += piece) {
      h.send(in.substr(at, piece));
      h.run();
      if (h.asleep()) {
        // Only at a request boundary: everything sent so far was whole requests.
        const std::size_t sent = std::min(at + piece, in.size());
        EXPECT_TRUE(sent == kGet.size() || sent == in.size()) << "piece " << piece;
      }
    }
    ASSERT_EQ(h.output(), whole.output()) << "piece " << piece;
    // It sleeps between the two requests only when no read brought bytes of both.
    const int between = piece < in.size() && kGet.size() % piece == 0 ? 1 : 0;
    EXPECT_EQ(h.sleeps(), 1 + between) << "piece " << piece;
  }
}

// A response the client does not take yet (its window is full) keeps the connection awake.
TEST(ConnectionSleep, DoesNotSleepWithOutputLeft) {
  CoreHarness h({}, true);
  h.sleep_when_idle = true;
  h.client_window = 10;
  h.send(kGet);
  h.run();
  EXPECT_FALSE(h.asleep());
  EXPECT_FALSE(h.conn().can_sleep());
}

// A lent-span driver (the blocking pumps) keeps its input buffer: such a connection never sleeps.
TEST(ConnectionSleep, ALentSpanConnectionNeverSleeps) {
  CoreHarness h;
  h.sleep_when_idle = true;
  h.send(kGet);
  h.run();
  EXPECT_EQ(h.sleeps(), 0);
  EXPECT_TRUE(h.conn().idle());
}

// The idle deadline runs on while it sleeps: woken by it, the connection closes silently.
TEST(ConnectionSleep, TheIdleDeadlineClosesASleepingConnectionSilently) {
  core::Config cfg;
  cfg.idle_timeout = 5000ms;
  CoreHarness h(cfg, true);
  h.sleep_when_idle = true;
  h.send(kGet);
  h.run();
  ASSERT_TRUE(h.asleep());
  const std::string first = h.output();
  EXPECT_EQ(h.deadline(), h.now() + 5000ms);
  h.advance(4999ms);
  EXPECT_FALSE(h.shut_wr() || h.closed());
  h.advance(1ms);
  EXPECT_EQ(h.output(), first);
  EXPECT_TRUE(h.shut_wr() || h.closed());
}

// The drain closes it as it closes an idle connection that never slept.
TEST(ConnectionSleep, DrainClosesASleepingConnection) {
  AwakeAndSleepy both;
  both.run([](CoreHarness& h) {
    h.send(kGet);
    h.run();
    h.conn().on_drain(h.now());
    h.run();
  });
  const CoreHarness& awake = both.awake;
  const CoreHarness& sleepy = both.sleepy;
  EXPECT_EQ(sleepy.sleeps(), 1);
  EXPECT_TRUE(awake.shut_wr() || awake.closed());
  EXPECT_EQ(sleepy.shut_wr(), awake.shut_wr());
  EXPECT_EQ(sleepy.closed(), awake.closed());
  EXPECT_EQ(sleepy.output(), awake.output());
}

TEST(ConnectionSleep, ClientEofWakesAndClosesIt) {
  CoreHarness h({}, true);
  h.sleep_when_idle = true;
  h.send(kGet);
  h.run();
  ASSERT_TRUE(h.asleep());
  h.send_eof();
  h.run();
  EXPECT_TRUE(h.closed());
}

// Proxy mode: the connection sleeps only once its upstream connection went back to the pool;
// the next request, after the wake, reuses one again.
TEST(ConnectionSleep, AProxiedConnectionSleepsOnceItsUpstreamIsReleased) {
  CoreHarness h(test::proxy_config(), true);
  h.sleep_when_idle = true;
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.sleeps(), 1);
  h.send("GET /b HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.sleeps(), 2);
  EXPECT_EQ(h.reuses(), 2);
  EXPECT_EQ(h.output(),
            "HTTP/1.1 200 OK\r\nVia: 1.1 gearbox\r\nContent-Length: 2\r\n\r\nok"
            "HTTP/1.1 200 OK\r\nVia: 1.1 gearbox\r\nContent-Length: 2\r\n\r\nok");
}

// A trusted proxy's X-Forwarded-For is kept after its connection slept and was woken with no
// address (the core keeps the verdict it made when the connection was built), and an
// untrusted client's is replaced alike.
TEST(ConnectionSleep, TheTrustedProxyVerdictSurvivesSleep) {
  sockaddr_storage loopback{};
  auto* in = reinterpret_cast<sockaddr_in*>(&loopback);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (bool trusted : {true, false}) {
    core::Config cfg = test::proxy_config();
    core::Cidr cidr;
    ASSERT_TRUE(core::parse_cidr(trusted ? "127.0.0.0/8" : "10.0.0.0/8", &cidr));
    cfg.trusted_proxies = {cidr};
    CoreHarness h(cfg, true, core::BufferPool::kSize, &loopback);
    h.sleep_when_idle = true;
    h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const std::string get = "GET /a HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n";
    h.send(get);
    h.run();
    h.send(get);
    h.run();
    ASSERT_EQ(h.sleeps(), 2);
    const std::string& up = h.upstream_received();
    const std::string kept = "X-Forwarded-For: 192.0.2.7, 127.0.0.1\r\n";
    const std::string replaced = "X-Forwarded-For: 127.0.0.1\r\n";
    const std::string& want = trusted ? kept : replaced;
    std::size_t first = up.find(want);
    ASSERT_NE(first, std::string::npos) << (trusted ? "trusted" : "untrusted") << ":\n" << up;
    EXPECT_NE(up.find(want, first + 1), std::string::npos)
        << "the request after the wake: " << (trusted ? "trusted" : "untrusted") << ":\n"
        << up;
  }
}

// Asleep, it stays counted open and idle; destroyed asleep, it is counted out.
TEST(ConnectionSleep, ASleepingConnectionStaysCountedOpenAndIdle) {
  auto arena = std::make_unique<core::metrics::Arena>();
  core::metrics::install(arena.get());
  core::metrics::Shard* shard = core::metrics::local();
  ASSERT_NE(shard, nullptr);
  {
    CoreHarness h({}, true);
    h.sleep_when_idle = true;
    h.send(kGet);
    h.run();
    ASSERT_TRUE(h.asleep());
    EXPECT_EQ(shard->open.load(), 1);
    EXPECT_EQ(shard->idle.load(), 1);
    h.send(kGet);
    h.run();
    EXPECT_EQ(h.sleeps(), 2);
    EXPECT_EQ(shard->open.load(), 1);
    EXPECT_EQ(shard->idle.load(), 1);
  }
  EXPECT_EQ(shard->open.load(), 0);
  EXPECT_EQ(shard->idle.load(), 0);
  core::metrics::install(nullptr);
}

}  // namespace
}  // namespace gearbox
