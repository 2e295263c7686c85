// Tests for server/config.cpp: every flag, every duration and size form, file + flag precedence,
// the one-line error forms, and every example file in configs/ loading cleanly.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "server/config_load.hpp"

namespace gearbox::core {
namespace {

ConfigResult load(std::vector<std::string> args) {
  args.insert(args.begin(), "gearbox");
  std::vector<const char*> argv;
  for (const std::string& arg : args) {
    argv.push_back(arg.c_str());
  }
  argv.push_back(nullptr);
  return load_config(static_cast<int>(args.size()), argv.data());
}

// A scratch directory for TOML files, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "gearbox-cfg-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& text) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file) << text;
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string error_of(std::vector<std::string> args) {
  ConfigResult result = load(std::move(args));
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(result.exit_now);
  EXPECT_EQ(result.exit_status, kConfigErrorStatus);
  EXPECT_EQ(result.error.find('\n'), std::string::npos) << result.error;
  return result.error;
}

std::string file_error(const std::string& toml) {
  TempDir dir;
  std::string file = dir.write("bad.toml", toml);
  std::string error = error_of({"--config", file});
  // Errors from a file name the file first.
  EXPECT_EQ(error.rfind(file, 0), 0u) << error;
  return error.substr(file.size());
}

Config load_ok(std::vector<std::string> args) {
  ConfigResult result = load(std::move(args));
  EXPECT_TRUE(result.ok) << result.error;
  EXPECT_FALSE(result.exit_now);
  return result.config;
}

Config load_file_ok(const std::string& toml, std::vector<std::string> extra = {}) {
  TempDir dir;
  std::string file = dir.write("ok.toml", toml);
  extra.insert(extra.begin(), {"--config", file});
  return load_ok(extra);
}

std::string ip_of(const sockaddr_storage& addr) {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buffer,
              sizeof buffer);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buffer,
              sizeof buffer);
  }
  return buffer;
}

TEST(ConfigTest, NoArgumentsGiveTheDefaults) {
  Config defaults;
  Config c = load_ok({});
  EXPECT_EQ(c.backend, defaults.backend);
  EXPECT_EQ(c.mode, defaults.mode);
  EXPECT_EQ(c.listen, defaults.listen);
  EXPECT_EQ(c.header_timeout, defaults.header_timeout);
  EXPECT_EQ(c.limits.max_body, defaults.limits.max_body);
  EXPECT_EQ(c.limits.max_header, defaults.limits.max_header);
  EXPECT_EQ(c.drain_timeout, defaults.drain_timeout);
  EXPECT_TRUE(c.groups.empty());
  EXPECT_TRUE(c.routes.empty());
  EXPECT_TRUE(c.config_file.empty());
}

struct FlagCase {
  std::vector<std::string> args;
  std::function<void(const Config&)> check;
};

TEST(ConfigTest, EveryFlagSetsItsField) {
  using std::chrono::milliseconds;
  const std::vector<FlagCase> cases = {
      {{"--backend", "pool"}, [](const Config& c) { EXPECT_EQ(c.backend, "pool"); }},
      {{"--mode", "echo"}, [](const Config& c) { EXPECT_EQ(c.mode, Mode::kEcho); }},
      {{"--mode", "proxy", "--upstream", "127.0.0.1:9001"},
       [](const Config& c) { EXPECT_EQ(c.mode, Mode::kProxy); }},
      {{"--listen", "[::1]:0"}, [](const Config& c) { EXPECT_EQ(c.listen, "[::1]:0"); }},
      {{"--workers", "3"}, [](const Config& c) { EXPECT_EQ(c.workers, 3); }},
      {{"--min-spare", "2"}, [](const Config& c) { EXPECT_EQ(c.min_spare, 2); }},
      {{"--max-spare", "40"}, [](const Config& c) { EXPECT_EQ(c.max_spare, 40); }},
      {{"--reuseport"}, [](const Config& c) { EXPECT_TRUE(c.reuseport); }},
      {{"--threads", "6"}, [](const Config& c) { EXPECT_EQ(c.threads, 6); }},
      {{"--thread-stack", "128k"}, [](const Config& c) { EXPECT_EQ(c.thread_stack, 131072u); }},
      {{"--fiber-stack", "32k"}, [](const Config& c) { EXPECT_EQ(c.fiber_stack, 32768u); }},
      {{"--max-connections", "77"}, [](const Config& c) { EXPECT_EQ(c.max_connections, 77); }},
      {{"--backlog", "64"}, [](const Config& c) { EXPECT_EQ(c.backlog, 64); }},
      {{"--header-timeout", "1500ms"},
       [](const Config& c) { EXPECT_EQ(c.header_timeout, milliseconds(1500)); }},
      {{"--idle-timeout", "2s"},
       [](const Config& c) { EXPECT_EQ(c.idle_timeout, milliseconds(2000)); }},
      {{"--body-timeout", "3m"},
       [](const Config& c) { EXPECT_EQ(c.body_timeout, milliseconds(180'000)); }},
      {{"--send-timeout", "4"},
       [](const Config& c) { EXPECT_EQ(c.send_timeout, milliseconds(4000)); }},
      {{"--drain-timeout", "0"},
       [](const Config& c) { EXPECT_EQ(c.drain_timeout, milliseconds(0)); }},
      {{"--max-body", "2m"},
       [](const Config& c) { EXPECT_EQ(c.limits.max_body, 2u * 1024 * 1024); }},
      {{"--max-header", "8k"}, [](const Config& c) { EXPECT_EQ(c.limits.max_header, 8192u); }},
      {{"--max-headers", "12"}, [](const Config& c) { EXPECT_EQ(c.limits.max_headers, 12u); }},
      {{"--upstream", "127.0.0.1:9001", "--upstream", "[::1]:9002"},
       [](const Config& c) {
         ASSERT_EQ(c.groups.size(), 1u);
         EXPECT_EQ(c.groups[0].name, "default");
         ASSERT_EQ(c.groups[0].servers.size(), 2u);
         EXPECT_EQ(c.groups[0].servers[0].endpoint.text, "127.0.0.1:9001");
         EXPECT_EQ(c.groups[0].servers[1].endpoint.text, "[::1]:9002");
         EXPECT_EQ(c.groups[0].servers[1].endpoint.addr.ss_family, AF_INET6);
         ASSERT_EQ(c.routes.size(), 1u);
         EXPECT_EQ(c.routes[0].prefix, "/");
         EXPECT_EQ(c.routes[0].group, "default");
       }},
      {{"--upstream", "127.0.0.1:9001", "--balance", "least-conn"},
       [](const Config& c) { EXPECT_EQ(c.groups.at(0).balance, Balance::kLeastConnections); }},
      {{"--upstream", "127.0.0.1:9001", "--proxy-connect-timeout", "250ms"},
       [](const Config& c) { EXPECT_EQ(c.groups.at(0).connect_timeout, milliseconds(250)); }},
      {{"--upstream", "127.0.0.1:9001", "--proxy-read-timeout", "7s"},
       [](const Config& c) { EXPECT_EQ(c.groups.at(0).read_timeout, milliseconds(7000)); }},
      {{"--upstream", "127.0.0.1:9001", "--proxy-send-timeout", "8s"},
       [](const Config& c) { EXPECT_EQ(c.groups.at(0).send_timeout, milliseconds(8000)); }},
      {{"--upstream", "127.0.0.1:9001", "--proxy-next-upstream-tries", "2"},
       [](const Config& c) { EXPECT_EQ(c.groups.at(0).next_upstream_tries, 2); }},
      {{"--upstream", "127.0.0.1:9001", "--proxy-next-upstream-timeout", "3s"},
       [](const Config& c) {
         EXPECT_EQ(c.groups.at(0).next_upstream_timeout, milliseconds(3000));
       }},
      {{"--upstream", "127.0.0.1:9001", "--proxy-keepalive", "3", "--proxy-keepalive-timeout",
        "2s"},
       [](const Config& c) {
         EXPECT_EQ(c.groups.at(0).keepalive, 3u);
         EXPECT_EQ(c.groups.at(0).keepalive_timeout, milliseconds(2000));
       }},
      {{"--upstream", "127.0.0.1:9001"},
       [](const Config& c) {
         EXPECT_EQ(c.groups.at(0).keepalive, 256u);
         EXPECT_EQ(c.groups.at(0).keepalive_timeout, milliseconds(60'000));
         EXPECT_EQ(c.groups.at(0).next_upstream_tries, 0);  // every server, as nginx
         EXPECT_EQ(c.groups.at(0).next_upstream_timeout, milliseconds(0));
       }},
      {{"--trusted-proxy", "10.1.2.3/8", "--trusted-proxy", "::1/128"},
       [](const Config& c) {
         ASSERT_EQ(c.trusted_proxies.size(), 2u);
         EXPECT_EQ(ip_of(c.trusted_proxies[0].base), "10.0.0.0");
         EXPECT_EQ(c.trusted_proxies[0].bits, 8);
         EXPECT_EQ(ip_of(c.trusted_proxies[1].base), "::1");
         EXPECT_EQ(c.trusted_proxies[1].bits, 128);
       }},
      {{"--access-log", "/tmp/gearbox-access.log"},
       [](const Config& c) { EXPECT_EQ(c.access_log, "/tmp/gearbox-access.log"); }},
      {{"--access-log", "-"}, [](const Config& c) { EXPECT_EQ(c.access_log, "-"); }},
      {{"--access-log-format", "json"},
       [](const Config& c) { EXPECT_EQ(c.access_log_format, AccessFormat::kJson); }},
      {{"--log-level", "debug"}, [](const Config& c) { EXPECT_EQ(c.log_level, "debug"); }},
  };
  for (const FlagCase& test : cases) {
    SCOPED_TRACE(test.args.front());
    ConfigResult result = load(test.args);
    ASSERT_TRUE(result.ok) << result.error;
    test.check(result.config);
  }
}

TEST(ConfigTest, SwitchesTakeExplicitValues) {
  EXPECT_FALSE(load_ok({"--reuseport=false"}).reuseport);
  EXPECT_EQ(load_ok({"--access-log=-"}).access_log, "-");
}

TEST(ConfigTest, UpstreamFlagSplitsOnCommas) {
  Config c = load_ok({"--upstream", "127.0.0.1:1,127.0.0.1:2"});
  ASSERT_EQ(c.groups.at(0).servers.size(), 2u);
  EXPECT_EQ(c.groups[0].servers[1].endpoint.text, "127.0.0.1:2");
}

TEST(ConfigTest, CheckHelpAndVersion) {
  ConfigResult check = load({"--check"});
  EXPECT_TRUE(check.ok);
  EXPECT_TRUE(check.check);
  EXPECT_FALSE(check.exit_now);

  ConfigResult help = load({"--help", "--max-body", "12q"});
  EXPECT_TRUE(help.ok);
  EXPECT_TRUE(help.help);
  EXPECT_TRUE(help.exit_now);
  EXPECT_EQ(help.exit_status, 0);
  EXPECT_NE(help.output.find("--upstream HOST:PORT"), std::string::npos);
  EXPECT_NE(help.output.find("Exit status"), std::string::npos);

  ConfigResult version = load({"--version"});
  EXPECT_TRUE(version.exit_now);
  EXPECT_EQ(version.exit_status, 0);
  EXPECT_EQ(version.output.rfind("gearbox ", 0), 0u);
}

TEST(ConfigTest, DurationForms) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
  EXPECT_EQ(parse_duration("3s"), milliseconds(3000));
  EXPECT_EQ(parse_duration("2m"), milliseconds(120'000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parse_duration("10"), milliseconds(10'000));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
  EXPECT_EQ(parse_duration("7d"), std::nullopt);
  for (const char* bad :
       {"", "s", "ms", "5x", "-1s", "1.5s", "10 s", " 10", "3S", "169h", "99999999999999999999"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << bad;
  }
}

TEST(ConfigTest, SizeForms) {
  EXPECT_EQ(parse_size("16k"), 16u * 1024);
  EXPECT_EQ(parse_size("16K"), 16u * 1024);
  EXPECT_EQ(parse_size("1m"), 1024u * 1024);
  EXPECT_EQ(parse_size("1M"), 1024u * 1024);
  EXPECT_EQ(parse_size("2g"), 2ull * 1024 * 1024 * 1024);
  EXPECT_EQ(parse_size("123"), 123u);
  EXPECT_EQ(parse_size("0"), 0u);
  for (const char* bad : {"", "k", "12q", "-1", "1.5m", "16kb", "2000g", "1 k"}) {
    EXPECT_EQ(parse_size(bad), std::nullopt) << bad;
  }
}

TEST(ConfigTest, FileDurationsAndSizesAsStringsOrIntegers) {
  using std::chrono::milliseconds;
  Config c = load_file_ok(
      "header_timeout = \"750ms\"\nidle_timeout = 5\nmax_body = \"2m\"\nmax_header = 4096\n"
      "thread_stack = \"1m\"\n");
  EXPECT_EQ(c.header_timeout, milliseconds(750));
  EXPECT_EQ(c.idle_timeout, milliseconds(5000));
  EXPECT_EQ(c.limits.max_body, 2u * 1024 * 1024);
  EXPECT_EQ(c.limits.max_header, 4096u);
  EXPECT_EQ(c.thread_stack, 1024u * 1024);
}

TEST(ConfigTest, FileSetsEveryTopLevelKey) {
  using std::chrono::milliseconds;
  Config c = load_file_ok(R"(
backend = "prefork"
mode = "proxy"
listen = "127.0.0.1:0"
workers = 9
min_spare = 1
max_spare = 3
reuseport = true
threads = 2
thread_stack = "64k"
max_connections = 100
backlog = 128
header_timeout = "1s"
idle_timeout = "2s"
body_timeout = "3s"
send_timeout = "4s"
drain_timeout = "5s"
max_body = "1k"
max_header = "2k"
max_headers = 20
upstream = ["127.0.0.1:9001"]
balance = "least-conn"
proxy_connect_timeout = "100ms"
proxy_read_timeout = "200ms"
proxy_send_timeout = "300ms"
proxy_next_upstream_tries = 3
proxy_next_upstream_timeout = "400ms"
trusted_proxies = ["10.0.0.0/8", "::1/128"]
access_log = true
access_log_format = "json"
log_level = "warn"
)");
  EXPECT_EQ(c.backend, "prefork");
  EXPECT_EQ(c.mode, Mode::kProxy);
  EXPECT_EQ(c.listen, "127.0.0.1:0");
  EXPECT_EQ(c.workers, 9);
  EXPECT_EQ(c.min_spare, 1);
  EXPECT_EQ(c.max_spare, 3);
  EXPECT_TRUE(c.reuseport);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.thread_stack, 65536u);
  EXPECT_EQ(c.max_connections, 100);
  EXPECT_EQ(c.backlog, 128);
  EXPECT_EQ(c.header_timeout, milliseconds(1000));
  EXPECT_EQ(c.idle_timeout, milliseconds(2000));
  EXPECT_EQ(c.body_timeout, milliseconds(3000));
  EXPECT_EQ(c.send_timeout, milliseconds(4000));
  EXPECT_EQ(c.drain_timeout, milliseconds(5000));
  EXPECT_EQ(c.limits.max_body, 1024u);
  EXPECT_EQ(c.limits.max_header, 2048u);
  EXPECT_EQ(c.limits.max_headers, 20u);
  ASSERT_EQ(c.groups.size(), 1u);
  EXPECT_EQ(c.groups[0].name, "default");
  EXPECT_EQ(c.groups[0].balance, Balance::kLeastConnections);
  EXPECT_EQ(c.groups[0].connect_timeout, milliseconds(100));
  EXPECT_EQ(c.groups[0].read_timeout, milliseconds(200));
  EXPECT_EQ(c.groups[0].send_timeout, milliseconds(300));
  EXPECT_EQ(c.groups[0].next_upstream_tries, 3);
  EXPECT_EQ(c.groups[0].next_upstream_timeout, milliseconds(400));
  EXPECT_EQ(c.trusted_proxies.size(), 2u);
  EXPECT_EQ(c.access_log, "-");
  EXPECT_EQ(c.access_log_format, AccessFormat::kJson);
  EXPECT_EQ(c.log_level, "warn");
}

TEST(ConfigTest, UpstreamGroupsAndRoutesFromFile) {
  using std::chrono::milliseconds;
  Config c = load_file_ok(R"(
mode = "proxy"
proxy_read_timeout = "9s"
[upstreams.api]
servers = ["127.0.0.1:9001", { address = "localhost:9002", weight = 2 }]
balance = "least-conn"
host = "api.internal"
max_fails = 3
fail_timeout = "20s"
health_check = { path = "/health", interval = "2s" }
connect_timeout = "1s"
send_timeout = "6s"
next_upstream_tries = 2
next_upstream_timeout = "7s"
keepalive = 4
keepalive_timeout = "30s"
[upstreams.static]
servers = ["[::1]:9003"]
[[routes]]
prefix = "/api/"
upstream = "api"
strip_prefix = true
[[routes]]
prefix = "/"
upstream = "static"
)");
  ASSERT_EQ(c.groups.size(), 2u);
  const UpstreamGroup& api = c.groups[0].name == "api" ? c.groups[0] : c.groups[1];
  const UpstreamGroup& stat = c.groups[0].name == "api" ? c.groups[1] : c.groups[0];
  EXPECT_EQ(api.name, "api");
  ASSERT_EQ(api.servers.size(), 2u);
  EXPECT_EQ(api.servers[0].weight, 1);
  EXPECT_EQ(api.servers[1].weight, 2);
  EXPECT_EQ(api.servers[1].endpoint.text, "127.0.0.1:9002");  // localhost prefers IPv4
  EXPECT_EQ(api.balance, Balance::kLeastConnections);
  EXPECT_EQ(api.host, "api.internal");
  EXPECT_EQ(api.max_fails, 3);
  EXPECT_EQ(api.fail_timeout, milliseconds(20'000));
  EXPECT_EQ(api.health_path, "/health");
  EXPECT_EQ(api.health_interval, milliseconds(2000));
  EXPECT_EQ(api.connect_timeout, milliseconds(1000));
  EXPECT_EQ(api.read_timeout, milliseconds(9000));  // the file's top-level default
  EXPECT_EQ(api.send_timeout, milliseconds(6000));
  EXPECT_EQ(api.next_upstream_tries, 2);
  EXPECT_EQ(api.next_upstream_timeout, milliseconds(7000));
  EXPECT_EQ(stat.next_upstream_tries, 0);
  EXPECT_EQ(api.keepalive, 4u);
  EXPECT_EQ(api.keepalive_timeout, milliseconds(30'000));
  EXPECT_EQ(stat.name, "static");
  EXPECT_EQ(stat.balance, Balance::kRoundRobin);
  EXPECT_FALSE(stat.host.has_value());
  EXPECT_EQ(stat.servers.at(0).endpoint.text, "[::1]:9003");
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].prefix, "/api/");
  EXPECT_EQ(c.routes[0].group, "api");
  EXPECT_TRUE(c.routes[0].strip_prefix);
  EXPECT_EQ(c.routes[1].group, "static");
  EXPECT_FALSE(c.routes[1].strip_prefix);
}

TEST(ConfigTest, KeepaliveDefaultsGroupsAndFlagsInThatOrder) {
  using std::chrono::milliseconds;
  const std::string toml = R"(
proxy_keepalive = 8
proxy_keepalive_timeout = "20s"
[upstreams.a]
servers = ["127.0.0.1:9001"]
keepalive = 2
[upstreams.b]
servers = ["127.0.0.1:9002"]
[[routes]]
prefix = "/a/"
upstream = "a"
[[routes]]
prefix = "/"
upstream = "b"
)";
  Config c = load_file_ok(toml);
  EXPECT_EQ(c.groups.at(0).keepalive, 2u);  // the group's own
  EXPECT_EQ(c.groups.at(0).keepalive_timeout, milliseconds(20'000));
  EXPECT_EQ(c.groups.at(1).keepalive, 8u);  // the file's default
  Config flagged = load_file_ok(toml, {"--proxy-keepalive", "1"});
  EXPECT_EQ(flagged.groups.at(0).keepalive, 1u);
  EXPECT_EQ(flagged.groups.at(1).keepalive, 1u);
}

TEST(ConfigTest, FlagsOverrideTheFile) {
  using std::chrono::milliseconds;
  const std::string toml = R"(
workers = 7
max_body = "4k"
header_timeout = "3s"
log_level = "warn"
trusted_proxies = ["10.0.0.0/8"]
proxy_connect_timeout = "2s"
[upstreams.api]
servers = ["127.0.0.1:9001"]
connect_timeout = "3s"
read_timeout = "4s"
[[routes]]
prefix = "/"
upstream = "api"
)";
  Config file_only = load_file_ok(toml);
  EXPECT_EQ(file_only.workers, 7);
  EXPECT_EQ(file_only.groups.at(0).connect_timeout, milliseconds(3000));

  Config c = load_file_ok(toml, {"--workers", "9", "--trusted-proxy", "192.168.0.0/16",
                                 "--proxy-read-timeout", "1s", "--upstream", "127.0.0.1:9005"});
  EXPECT_EQ(c.workers, 9);
  EXPECT_EQ(c.limits.max_body, 4096u);              // file value kept
  EXPECT_EQ(c.header_timeout, milliseconds(3000));  // file value kept
  EXPECT_EQ(c.log_level, "warn");
  ASSERT_EQ(c.trusted_proxies.size(), 1u);  // the flag's list replaces the file's
  EXPECT_EQ(ip_of(c.trusted_proxies[0].base), "192.168.0.0");
  ASSERT_EQ(c.groups.size(), 2u);
  EXPECT_EQ(c.groups[0].name, "default");
  for (const UpstreamGroup& g : c.groups) {
    EXPECT_EQ(g.read_timeout, milliseconds(1000)) << g.name;  // a flag applies to every group
  }
  EXPECT_EQ(c.groups[1].connect_timeout, milliseconds(3000));  // group beats file default
  EXPECT_EQ(c.groups[0].connect_timeout, milliseconds(2000));  // file default
  ASSERT_EQ(c.routes.size(), 1u);  // --upstream takes over the "/" route
  EXPECT_EQ(c.routes[0].group, "default");
}

TEST(ConfigTest, ErrorMessagesNameTheFlag) {
  EXPECT_EQ(error_of({"--max-body", "12q"}),
            "--max-body: \"12q\" is not a size (use 16k, 1m or bytes)");
  EXPECT_EQ(error_of({"--idle-timeout", "5x"}),
            "--idle-timeout: \"5x\" is not a duration (use 500ms, 3s, 2m or seconds)");
  EXPECT_EQ(error_of({"--header-timeout", "0"}),
            "--header-timeout: \"0\" is too short (at least 1ms)");
  EXPECT_EQ(error_of({"--backlog", "70000"}), "--backlog: 70000 is out of range (1..65535)");
  EXPECT_EQ(error_of({"--workers", "many"}), "--workers: \"many\" is not a whole number");
  EXPECT_EQ(error_of({"--upstream", "127.0.0.1:1", "--proxy-next-upstream-tries", "-1"}),
            "--proxy-next-upstream-tries: -1 is out of range (0..1000)");
  EXPECT_EQ(error_of({"--upstream", "127.0.0.1:1", "--proxy-next-upstream-timeout", "soon"}),
            "--proxy-next-upstream-timeout: \"soon\" is not a duration (use 500ms, 3s, 2m or "
            "seconds)");
  EXPECT_EQ(error_of({"--mode", "mirror"}), "--mode: \"mirror\" is not a mode (use echo or proxy)");
  EXPECT_EQ(error_of({"--balance", "random"}),
            "--balance: \"random\" is not a balance method (use round-robin or least-conn)");
  EXPECT_EQ(error_of({"--log-level", "loud"}),
            "--log-level: \"loud\" is not a log level (use error, warn, info or debug)");
  EXPECT_EQ(error_of({"--listen", "8080"}),
            "--listen: \"8080\" is not ADDR:PORT (numeric address, localhost or *)");
  EXPECT_EQ(error_of({"--listen", "example.com:80"}),
            "--listen: \"example.com:80\" is not ADDR:PORT (numeric address, localhost or *)");
  EXPECT_EQ(load_ok({"--listen", "*:0"}).listen, "*:0");
  EXPECT_EQ(load_ok({"--listen", "localhost:0"}).listen, "localhost:0");
  EXPECT_EQ(error_of({"--upstream", "nohost"}), "--upstream: \"nohost\" is not HOST:PORT");
  EXPECT_EQ(error_of({"--upstream", "127.0.0.1:0"}),
            "--upstream: \"127.0.0.1:0\" is not HOST:PORT");
  EXPECT_EQ(error_of({"--upstream", "::1:80"}), "--upstream: \"::1:80\" is not HOST:PORT");
  EXPECT_EQ(error_of({"--trusted-proxy", "10.0.0.0/33"}),
            "--trusted-proxy: \"10.0.0.0/33\" is not a CIDR block (use 10.0.0.0/8 or ::1/128)");
  EXPECT_EQ(error_of({"--max-header", "10"}), "--max-header: \"10\" is out of range (256..64m)");
  EXPECT_EQ(error_of({"--nonsense"}), "--nonsense: unknown flag (see --help)");
  EXPECT_EQ(error_of({"--workers"}), "--workers: needs a value");
  EXPECT_EQ(error_of({"stray"}), "\"stray\": unexpected argument (see --help)");
  EXPECT_EQ(error_of({"--mode", "proxy"}),
            "--mode: proxy mode needs an upstream (--upstream HOST:PORT or [upstreams.NAME] in "
            "the file)");
  EXPECT_EQ(error_of({"--max-spare", "3"}), "--max-spare: 3 is less than min_spare (5)");
  EXPECT_EQ(error_of({"--min-spare", "20"}), "--min-spare: 20 is more than max_spare (10)");
  EXPECT_NE(error_of({"--reuseport=maybe"}).find("\"maybe\" is not true or false"),
            std::string::npos);
  EXPECT_EQ(error_of({"--access-log-format", "apache"}),
            "--access-log-format: \"apache\" is not an access log format (use combined or json)");
  EXPECT_EQ(error_of({"--access-log", ""}),
            "--access-log: is empty (use a file path, or - for stderr)");
}

TEST(ConfigTest, ErrorMessagesNameTheFileAndKey) {
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [\"127.0.0.1:9001\", \"nohost\"]\n"),
            ": upstreams.api.servers[1]: \"nohost\" is not HOST:PORT");
  EXPECT_EQ(file_error("bogus = 1\n"), ": bogus: unknown key");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [\"127.0.0.1:1\"]\nretries = 2\n"),
            ": upstreams.api.retries: unknown key");
  EXPECT_EQ(file_error("workers = \"ten\"\n"), ": workers: expected an integer, got a string");
  EXPECT_EQ(file_error("workers = 0\n"), ": workers: 0 is out of range (1..100000)");
  EXPECT_EQ(
      file_error("[upstreams.api]\nservers = [\"127.0.0.1:1\"]\nnext_upstream_tries = 1001\n"),
      ": upstreams.api.next_upstream_tries: 1001 is out of range (0..1000)");
  EXPECT_EQ(file_error("max_body = \"12q\"\n"),
            ": max_body: \"12q\" is not a size (use 16k, 1m or bytes)");
  EXPECT_EQ(file_error("idle_timeout = 1.5\n"),
            ": idle_timeout: expected a duration string or an integer (seconds), got a float");
  EXPECT_EQ(file_error("access_log = 3\n"), ": access_log: expected a string, got an integer");
  EXPECT_EQ(file_error("reuseport = \"yes\"\n"),
            ": reuseport: expected true or false, got a string");
  EXPECT_EQ(file_error("mode = \"proxy\"\n"),
            ": mode: proxy mode needs an upstream (--upstream HOST:PORT or [upstreams.NAME] in "
            "the file)");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [\"127.0.0.1:1\"]\n"
                       "[[routes]]\nprefix = \"/x/\"\nupstream = \"web\"\n"),
            ": routes[0].upstream: \"web\" is not a group in [upstreams]");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [\"127.0.0.1:1\"]\n"
                       "[[routes]]\nprefix = \"/\"\nupstream = \"api\"\n"
                       "[[routes]]\nprefix = \"/\"\nupstream = \"api\"\n"),
            ": routes[1].prefix: \"/\" is routed twice");
  EXPECT_EQ(file_error("[[routes]]\nprefix = \"api\"\nupstream = \"api\"\n"),
            ": routes[0].prefix: \"api\" is not a path prefix (it starts with /)");
  EXPECT_EQ(file_error("[[routes]]\nprefix = \"/\"\n"),
            ": routes[0]: missing upstream = \"GROUP\"");
  EXPECT_EQ(file_error("[upstreams.api]\nbalance = \"least-conn\"\n"),
            ": upstreams.api: missing servers = [\"HOST:PORT\", ...]");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = []\n"),
            ": upstreams.api.servers: needs at least one server");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [{ weight = 2 }]\n"),
            ": upstreams.api.servers[0]: missing address");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [{ address = \"127.0.0.1:1\", weight = 0 }]\n"),
            ": upstreams.api.servers[0].weight: 0 is out of range (1..1000)");
  EXPECT_EQ(file_error("[upstreams.api]\nservers = [\"127.0.0.1:1\"]\n"
                       "health_check = { path = \"health\" }\n"),
            ": upstreams.api.health_check.path: \"health\" is not a path (it starts with /)");
  EXPECT_EQ(file_error("[upstreams.a]\nservers = [\"127.0.0.1:1\"]\n"
                       "[upstreams.b]\nservers = [\"127.0.0.1:2\"]\n"),
            ": routes: several upstream groups but no [[routes]] to choose between them");
  EXPECT_EQ(file_error("trusted_proxies = [\"10.0.0.0/8\", \"banana\"]\n"),
            ": trusted_proxies[1]: \"banana\" is not a CIDR block (use 10.0.0.0/8 or ::1/128)");
}

TEST(ConfigTest, TomlSyntaxErrorNamesLineAndColumn) {
  std::string error = file_error("workers = 4\nthis is not toml\n");
  EXPECT_EQ(error.rfind(":2:", 0), 0u) << error;
}

TEST(ConfigTest, MissingFile) {
  TempDir dir;
  std::string missing = dir.path() + "/absent.toml";
  EXPECT_EQ(error_of({"--config", missing}), missing + ": cannot read: No such file or directory");
}

TEST(ConfigTest, AFlagErrorIsReportedEvenWhenTheFileIsFine) {
  TempDir dir;
  std::string file = dir.write("ok.toml", "workers = 4\n");
  EXPECT_EQ(error_of({"--config", file, "--workers", "-1"}),
            "--workers: -1 is out of range (1..100000)");
}

TEST(ConfigTest, BackendSourceNamesWhereTheBackendWasSet) {
  TempDir dir;
  std::string file = dir.write("b.toml", "backend = \"nope\"\n");
  ConfigResult from_file = load({"--config", file});
  ASSERT_TRUE(from_file.ok);
  EXPECT_EQ(from_file.backend_source, file + ": backend");
  ConfigResult from_flag = load({"--config", file, "--backend", "pool"});
  EXPECT_EQ(from_flag.backend_source, "--backend");
  EXPECT_EQ(from_flag.config.backend, "pool");
}

TEST(ConfigTest, HostPortAndCidrHelpers) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(split_host_port("[::1]:8080", &host, &port));
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(split_host_port("localhost:0", &host, &port));
  EXPECT_EQ(port, 0);
  for (const char* bad :
       {"", ":80", "host:", "host:65536", "host:8x", "[::1]80", "[::1]:", "a:b:1"}) {
    EXPECT_FALSE(split_host_port(bad, &host, &port)) << bad;
  }
  Cidr cidr;
  ASSERT_TRUE(parse_cidr("127.0.0.1", &cidr));
  EXPECT_EQ(cidr.bits, 32);
  ASSERT_TRUE(parse_cidr("fd00::1234/8", &cidr));
  EXPECT_EQ(ip_of(cidr.base), "fd00::");
  EXPECT_EQ(cidr.bits, 8);
  for (const char* bad : {"10.0.0.0/", "10.0.0.0/x", "::/129", "10.0.0/8", "host/8"}) {
    EXPECT_FALSE(parse_cidr(bad, &cidr)) << bad;
  }
}

// Every example in configs/ must load (and so stays in step with the loader).
TEST(ConfigTest, EveryExampleConfigLoads) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(GEARBOX_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".toml") {
      continue;
    }
    SCOPED_TRACE(entry.path().string());
    ConfigResult result = load({"--config", entry.path().string()});
    EXPECT_TRUE(result.ok) << result.error;
    ++count;
  }
  EXPECT_GE(count, 5);
}

}  // namespace
}  // namespace gearbox::core
