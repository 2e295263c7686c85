// The admin endpoint over every backend: /metrics in the Prometheus text format (checked by the
// prometheus_client parser) counting what the clients did, /status?format=json agreeing with it,
// and the /status page rendered by a real headless browser while a load runs.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class AdminTest : public ConformanceTest {
 protected:
  // Starts the server with --admin-listen 127.0.0.1:0 and reads the admin port from its log.
  bool start_with_admin(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--admin-listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    if (!start_server(args)) {
      return false;
    }
    admin_port_ = admin_port(server_);
    EXPECT_GT(admin_port_, 0) << "no admin line:\n" << server_.log_text();
    return admin_port_ > 0;
  }

  std::string admin_get(const std::string& path) {
    HttpResponse r =
        ::gearbox::test::exchange(admin_port_, "GET " + path + " HTTP/1.1\r\nHost: admin\r\n\r\n");
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200) << r.raw_head;
    return r.body;
  }

  // The value of the sample `name{labels}` (labels exactly as rendered), or -1.
  static double sample(const std::string& text, const std::string& series) {
    std::size_t at = 0;
    while ((at = text.find(series + " ", at)) != std::string::npos) {
      if (at == 0 || text[at - 1] == '\n') {
        return std::stod(text.substr(at + series.size() + 1));
      }
      at += series.size();
    }
    return -1;
  }

  // The body of `path` once `ready(body)` holds, or the last one after 3 s: a request is counted
  // when the server saw its response written, which may be just after the client read it.
  template <class Ready>
  std::string admin_get_when(const std::string& path, Ready ready) {
    auto until = std::chrono::steady_clock::now() + 3s;
    std::string body = admin_get(path);
    while (!ready(body) && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(20ms);
      body = admin_get(path);
    }
    return body;
  }

  // A JSON number field of /status?format=json, or -1.
  static double json_number(const std::string& json, const std::string& key) {
    std::smatch m;
    std::regex field("\"" + key + "\":(-?[0-9.]+)");
    return std::regex_search(json, m, field) ? std::stod(m[1]) : -1;
  }

  int admin_port_ = 0;
};

TEST_P(AdminTest, MetricsCountRequestsByMethodStatusAndErrorKind) {
  ASSERT_TRUE(start_with_admin());
  CurlClient curl;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(curl.get(url("/plaintext")).status, 200);
  }
  EXPECT_EQ(curl.request("POST", url("/echo"), "hello").status, 200);
  EXPECT_EQ(::gearbox::test::exchange(port(), "BROKEN\r\n\r\n").status, 400);
  std::string text = admin_get_when("/metrics", [](const std::string& t) {
    // ... and the refused connection is gone (its close may trail its response).
    return sample(t, "gearbox_http_request_duration_seconds_count") == 5 &&
           sample(t, "gearbox_connections_open") == 1;
  });
  EXPECT_EQ(sample(text, "gearbox_http_requests_total{method=\"GET\",code=\"2xx\"}"), 3) << text;
  EXPECT_EQ(sample(text, "gearbox_http_requests_total{method=\"POST\",code=\"2xx\"}"), 1);
  EXPECT_EQ(sample(text, "gearbox_http_requests_total{method=\"other\",code=\"4xx\"}"), 1);
  EXPECT_EQ(sample(text, "gearbox_errors_total{kind=\"parse\"}"), 1);
  EXPECT_EQ(sample(text, "gearbox_http_request_duration_seconds_count"), 5);
  EXPECT_GT(sample(text, "gearbox_http_received_bytes_total"), 100);
  EXPECT_GT(sample(text, "gearbox_http_sent_bytes_total"), 100);
  EXPECT_EQ(sample(text, "gearbox_connections_open"), 1) << "curl keeps its connection open";
  EXPECT_EQ(sample(text, "gearbox_connections_idle"), 1);
  EXPECT_NE(
      text.find("gearbox_info{version=\"" GEARBOX_VERSION "\",backend=\"" + GetParam() + "\""),
      std::string::npos);

  // The official client library's parser accepts every line.
  std::string file = "/tmp/gearbox-metrics-" + std::to_string(::getpid()) + ".txt";
  std::ofstream(file) << text;
  std::string check =
      "/usr/bin/python3 -c 'import sys; from prometheus_client.parser import "
      "text_string_to_metric_families as p; f = list(p(open(sys.argv[1]).read())); "
      "assert len(f) >= 8, len(f)' " +
      file;
  EXPECT_EQ(std::system(check.c_str()), 0) << text;
  std::filesystem::remove(file);
}

TEST_P(AdminTest, StatusJsonAgreesWithMetricsAndNamesTheModel) {
  ASSERT_TRUE(start_with_admin());
  CurlClient curl;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(curl.get(url("/health")).status, 200);
  }
  std::string json = admin_get_when("/status?format=json", [](const std::string& j) {
    return json_number(j, "requests_total") == 4;
  });
  EXPECT_NE(json.find("\"backend\":\"" + GetParam() + "\""), std::string::npos) << json;
  EXPECT_EQ(json_number(json, "requests_total"), 4) << json;
  EXPECT_EQ(json_number(json, "connections_open"), 1) << json;
  EXPECT_GE(json_number(json, "os_threads"), 1) << json;
  EXPECT_NE(json.find("\"model_state\":{"), std::string::npos) << json;
  if (GetParam() == "prefork") {
    EXPECT_NE(json.find("\"state\":\"idle\""), std::string::npos) << json;
    EXPECT_GE(json_number(json, "workers_idle"), 1) << json;
  } else if (GetParam() == "fiber") {
    EXPECT_EQ(json_number(json, "connection_fibers"), 1) << json;
    EXPECT_EQ(json_number(json, "parked_on_netpoller"), 1) << json;
    EXPECT_NE(json.find("\"fibers_launched\":"), std::string::npos) << json;
  } else if (GetParam() == "uring") {
    EXPECT_GT(json_number(json, "turns"), 0) << json;
    EXPECT_EQ(json_number(json, "connections"), 1) << json;
  } else if (GetParam() == "pool") {
    EXPECT_GE(json_number(json, "worker_threads"), 1) << json;
    EXPECT_EQ(json_number(json, "connections_held"), 1) << json;
  }
  HttpResponse page =
      ::gearbox::test::exchange(admin_port_, "GET /status HTTP/1.1\r\nHost: admin\r\n\r\n");
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  HttpResponse post = ::gearbox::test::exchange(
      admin_port_, "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET, HEAD");
}

TEST_P(AdminTest, StatusPageRendersAndUpdatesInAHeadlessBrowserUnderLoad) {
  ASSERT_TRUE(start_with_admin());
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::thread load([&] {
    CurlClient curl;
    while (!stop) {
      if (curl.get(url("/plaintext")).status == 200) {
        ++served;
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  while (served < 20) {
    std::this_thread::sleep_for(10ms);
  }
  double before = json_number(admin_get("/status?format=json"), "requests_total");
  std::string dom_file = "/tmp/gearbox-status-dom-" + std::to_string(::getpid()) + ".html";
  std::string command =
      "chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "
      "--user-data-dir=/tmp/gearbox-chromium-" +
      std::to_string(::getpid()) +
      " --virtual-time-budget=3500 --dump-dom http://127.0.0.1:" + std::to_string(admin_port_) +
      "/status > " + dom_file + " 2>/dev/null";
  int rc = std::system(command.c_str());
  double after = json_number(admin_get("/status?format=json"), "requests_total");
  stop = true;
  load.join();
  ASSERT_EQ(rc, 0) << command;
  std::ifstream in(dom_file);
  std::string dom((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(dom_file);
  std::filesystem::remove_all("/tmp/gearbox-chromium-" + std::to_string(::getpid()));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("data-updates=\"(\\d+)\""))) << dom;
  EXPECT_GE(std::stoi(m[1]), 2) << "the page should have refreshed itself at least twice";
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("id=\"requests_total\">(\\d+)<"))) << dom;
  double shown = std::stod(m[1]);
  EXPECT_GE(shown, before) << "the page shows what the JSON showed before it loaded";
  EXPECT_LE(shown, after);
  EXPECT_NE(dom.find("id=\"backend\">" + GetParam() + "<"), std::string::npos) << dom;
}

GEARBOX_CONFORMANCE_SUITE(AdminTest);

}  // namespace
}  // namespace gearbox::test
