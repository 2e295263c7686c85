// Configuration loading: cxxopts reads the flags, toml++ the file, and one validated Config comes
// out. Every mistake becomes one line naming where it was made: `--flag: ...` or `file: key: ...`.
// Exceptions are used inside this file only (config errors are caught in load_config).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <string>
#include <vector>

#include "server/config_load.hpp"

namespace gearbox::core {
namespace {

constexpr std::int64_t kMaxDurationMs = 7LL * 24 * 3600 * 1000;
constexpr std::uint64_t kMaxSize = 1ULL << 40;
constexpr std::string_view kSizeHint = " is not a size (use 16k, 1m or bytes)";
constexpr std::string_view kDurationHint = " is not a duration (use 500ms, 3s, 2m or seconds)";

// A finished one-line error, thrown inside this file and caught by load_config.
struct ConfigError {
  std::string line;
};

[[noreturn]] void fail(std::string_view label, std::string_view message) {
  throw ConfigError{std::string(label) + ": " + std::string(message)};
}

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// One configured value: a flag's text or a file's TOML node, and the label that names it in
// errors ("--max-body" or "gearbox.toml: max_body").
struct Source {
  std::string label;
  bool from_flag = false;
  std::string text;                  // flag
  const toml::node* node = nullptr;  // file
};

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date or time";
  }
}

[[noreturn]] void fail_type(const Source& s, std::string_view expected) {
  fail(s.label, "expected " + std::string(expected) + ", got " + std::string(type_name(*s.node)));
}

// The value as written, for messages: strings quoted, integers bare.
std::string display(const Source& s) {
  if (s.from_flag) {
    return quoted(s.text);
  }
  if (auto str = s.node->as_string()) {
    return quoted(str->get());
  }
  if (auto num = s.node->as_integer()) {
    return std::to_string(num->get());
  }
  return std::string(type_name(*s.node));
}

std::string get_string(const Source& s) {
  if (s.from_flag) {
    return s.text;
  }
  if (auto str = s.node->as_string()) {
    return str->get();
  }
  fail_type(s, "a string");
}

bool get_bool(const Source& s) {
  if (s.from_flag) {
    return s.text == "true";
  }
  if (auto b = s.node->as_boolean()) {
    return b->get();
  }
  fail_type(s, "true or false");
}

// ADDR:PORT with a numeric host, localhost or *.
std::string get_listen_address(const Source& s) {
  std::string text = get_string(s);
  std::string host;
  int port = 0;
  in6_addr scratch{};
  if (!split_host_port(text, &host, &port) ||
      (host != "localhost" && host != "*" && inet_pton(AF_INET, host.c_str(), &scratch) != 1 &&
       inet_pton(AF_INET6, host.c_str(), &scratch) != 1)) {
    fail(s.label, quoted(text) + " is not ADDR:PORT (numeric address, localhost or *)");
  }
  return text;
}

std::optional<std::int64_t> parse_int(std::string_view text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::int64_t get_int(const Source& s, std::int64_t lo, std::int64_t hi) {
  std::int64_t value = 0;
  if (s.from_flag) {
    auto parsed = parse_int(s.text);
    if (!parsed) {
      fail(s.label, quoted(s.text) + " is not a whole number");
    }
    value = *parsed;
  } else if (auto num = s.node->as_integer()) {
    value = num->get();
  } else {
    fail_type(s, "an integer");
  }
  if (value < lo || value > hi) {
    fail(s.label, std::to_string(value) + " is out of range (" + std::to_string(lo) + ".." +
                      std::to_string(hi) + ")");
  }
  return value;
}

std::string duration_text(std::int64_t ms) {
  if (ms % 1000 != 0) {
    return std::to_string(ms) + "ms";
  }
  return std::to_string(ms / 1000) + "s";
}

// min_ms: the smallest value allowed (0 for drain and fail timeouts, 1 ms for the others).
Duration get_duration(const Source& s, std::int64_t min_ms) {
  std::optional<Duration> value;
  if (s.from_flag) {
    value = parse_duration(s.text);
  } else if (auto str = s.node->as_string()) {
    value = parse_duration(str->get());
  } else if (auto num = s.node->as_integer()) {
    if (num->get() >= 0 && num->get() <= kMaxDurationMs / 1000) {
      value = Duration(num->get() * 1000);
    }
  } else {
    fail_type(s, "a duration string or an integer (seconds)");
  }
  if (!value) {
    fail(s.label, display(s) + std::string(kDurationHint));
  }
  if (value->count() < min_ms) {
    fail(s.label, display(s) + " is too short (at least " + duration_text(min_ms) + ")");
  }
  return *value;
}

std::string size_text(std::uint64_t bytes) {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0) {
    return std::to_string(bytes / (1024 * 1024)) + "m";
  }
  if (bytes >= 1024 && bytes % 1024 == 0) {
    return std::to_string(bytes / 1024) + "k";
  }
  return std::to_string(bytes);
}

std::uint64_t get_size(const Source& s, std::uint64_t lo, std::uint64_t hi) {
  std::optional<std::uint64_t> value;
  if (s.from_flag) {
    value = parse_size(s.text);
  } else if (auto str = s.node->as_string()) {
    value = parse_size(str->get());
  } else if (auto num = s.node->as_integer()) {
    if (num->get() >= 0 && static_cast<std::uint64_t>(num->get()) <= kMaxSize) {
      value = static_cast<std::uint64_t>(num->get());
    }
  } else {
    fail_type(s, "a size string or an integer (bytes)");
  }
  if (!value) {
    fail(s.label, display(s) + std::string(kSizeHint));
  }
  if (*value < lo || *value > hi) {
    fail(s.label, display(s) + " is out of range (" + size_text(lo) + ".." + size_text(hi) + ")");
  }
  return *value;
}

// The elements of a list value; a single string counts as a one-element list.
std::vector<Source> get_list(const Source& s) {
  std::vector<Source> items;
  if (s.node->is_string()) {
    items.push_back(s);
    return items;
  }
  const toml::array* array = s.node->as_array();
  if (array == nullptr) {
    fail_type(s, "an array");
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    items.push_back(Source{s.label + "[" + std::to_string(i) + "]", false, {}, array->get(i)});
  }
  return items;
}

Balance get_balance(const Source& s) {
  std::string text = get_string(s);
  if (text == "round-robin") {
    return Balance::kRoundRobin;
  }
  if (text == "least-conn") {
    return Balance::kLeastConnections;
  }
  fail(s.label, quoted(text) + " is not a balance method (use round-robin or least-conn)");
}

Endpoint get_endpoint(const Source& s) {
  Endpoint endpoint;
  std::string error;
  if (!resolve_endpoint(get_string(s), &endpoint, &error)) {
    fail(s.label, error);
  }
  return endpoint;
}

// The values that are set once and apply to every upstream group unless the group (file) or a
// flag says otherwise.
struct ProxyDefaults {
  std::optional<Balance> balance;
  std::optional<Duration> connect_timeout;
  std::optional<Duration> read_timeout;
  std::optional<Duration> send_timeout;
  std::optional<int> next_upstream_tries;
  std::optional<Duration> next_upstream_timeout;
  std::optional<std::size_t> keepalive;
  std::optional<Duration> keepalive_timeout;
};

// A group as the file wrote it: what it set explicitly stays optional until defaults are known.
struct GroupSpec {
  UpstreamGroup group;
  std::string label;
  ProxyDefaults own;
};

struct Loader {
  Config config;
  std::string file_label;  // "path: " or empty
  std::string backend_source = "--backend";
  std::string mode_label = "--mode";
  std::string admin_label;      // where admin_listen was set
  std::string min_spare_label;  // where min_spare / max_spare were set; empty = default
  std::string max_spare_label;
  ProxyDefaults file_defaults;
  ProxyDefaults flag_defaults;
  std::optional<std::vector<UpstreamServer>> default_servers;  // --upstream / `upstream`
  std::vector<GroupSpec> groups;
  std::vector<std::string> route_labels;

  ProxyDefaults& defaults(const Source& s) { return s.from_flag ? flag_defaults : file_defaults; }
};

using Setter = void (*)(Loader&, const Source&);

// A scalar setting: its file key; the flag is the same name with dashes.
struct Key {
  std::string_view name;
  Setter set;
};

const Key kKeys[] = {
    {"backend",
     [](Loader& l, const Source& s) {
       l.config.backend = get_string(s);
       l.backend_source = s.label;
       if (l.config.backend.empty()) {
         fail(s.label, "empty backend name");
       }
     }},
    {"mode",
     [](Loader& l, const Source& s) {
       std::string text = get_string(s);
       if (text == "echo") {
         l.config.mode = Mode::kEcho;
       } else if (text == "proxy") {
         l.config.mode = Mode::kProxy;
       } else {
         fail(s.label, quoted(text) + " is not a mode (use echo or proxy)");
       }
       l.mode_label = s.label;
     }},
    {"listen", [](Loader& l, const Source& s) { l.config.listen = get_listen_address(s); }},
    {"admin_listen",
     [](Loader& l, const Source& s) {
       l.config.admin_listen = get_listen_address(s);
       l.admin_label = s.label;
     }},
    {"workers", [](Loader& l, const Source& s) { l.config.workers = get_int(s, 1, 100'000); }},
    {"min_spare",
     [](Loader& l, const Source& s) {
       l.config.min_spare = get_int(s, 0, 100'000);
       l.min_spare_label = s.label;
     }},
    {"max_spare",
     [](Loader& l, const Source& s) {
       l.config.max_spare = get_int(s, 1, 100'000);
       l.max_spare_label = s.label;
     }},
    {"reuseport", [](Loader& l, const Source& s) { l.config.reuseport = get_bool(s); }},
    {"sqpoll", [](Loader& l, const Source& s) { l.config.sqpoll = get_bool(s); }},
    {"threads", [](Loader& l, const Source& s) { l.config.threads = get_int(s, 0, 1024); }},
    {"thread_stack",
     [](Loader& l, const Source& s) {
       l.config.thread_stack = get_size(s, 16 * 1024, 1024 * 1024 * 1024);
     }},
    {"fiber_stack",
     [](Loader& l, const Source& s) {
       l.config.fiber_stack = get_size(s, 16 * 1024, 64 * 1024 * 1024);
     }},
    {"max_connections",
     [](Loader& l, const Source& s) { l.config.max_connections = get_int(s, 1, 10'000'000); }},
    {"backlog", [](Loader& l, const Source& s) { l.config.backlog = get_int(s, 1, 65'535); }},
    {"header_timeout",
     [](Loader& l, const Source& s) { l.config.header_timeout = get_duration(s, 1); }},
    {"idle_timeout",
     [](Loader& l, const Source& s) { l.config.idle_timeout = get_duration(s, 1); }},
    {"body_timeout",
     [](Loader& l, const Source& s) { l.config.body_timeout = get_duration(s, 1); }},
    {"send_timeout",
     [](Loader& l, const Source& s) { l.config.send_timeout = get_duration(s, 1); }},
    {"drain_timeout",
     [](Loader& l, const Source& s) { l.config.drain_timeout = get_duration(s, 0); }},
    {"max_body",
     [](Loader& l, const Source& s) { l.config.limits.max_body = get_size(s, 0, kMaxSize); }},
    {"max_header",
     [](Loader& l, const Source& s) {
       l.config.limits.max_header = get_size(s, 256, 64 * 1024 * 1024);
     }},
    {"max_headers",
     [](Loader& l, const Source& s) { l.config.limits.max_headers = get_int(s, 1, 10'000); }},
    {"balance", [](Loader& l, const Source& s) { l.defaults(s).balance = get_balance(s); }},
    {"proxy_connect_timeout",
     [](Loader& l, const Source& s) { l.defaults(s).connect_timeout = get_duration(s, 1); }},
    {"proxy_read_timeout",
     [](Loader& l, const Source& s) { l.defaults(s).read_timeout = get_duration(s, 1); }},
    {"proxy_send_timeout",
     [](Loader& l, const Source& s) { l.defaults(s).send_timeout = get_duration(s, 1); }},
    {"proxy_next_upstream_tries",
     [](Loader& l, const Source& s) {
       l.defaults(s).next_upstream_tries = static_cast<int>(get_int(s, 0, 1000));
     }},
    {"proxy_keepalive",
     [](Loader& l, const Source& s) {
       l.defaults(s).keepalive = static_cast<std::size_t>(get_int(s, 0, 100'000));
     }},
    {"proxy_keepalive_timeout",
     [](Loader& l, const Source& s) { l.defaults(s).keepalive_timeout = get_duration(s, 1); }},
    {"proxy_next_upstream_timeout",
     [](Loader& l, const Source& s) { l.defaults(s).next_upstream_timeout = get_duration(s, 0); }},
    {"access_log",
     [](Loader& l, const Source& s) {
       // A file path, "-" for stderr; in a file also true ("-") or false (off).
       if (!s.from_flag && s.node->is_boolean()) {
         l.config.access_log = get_bool(s) ? "-" : "";
         return;
       }
       std::string text = get_string(s);
       if (text.empty()) {
         fail(s.label, "is empty (use a file path, or - for stderr)");
       }
       l.config.access_log = text;
     }},
    {"access_log_format",
     [](Loader& l, const Source& s) {
       std::string text = get_string(s);
       if (text == "combined") {
         l.config.access_log_format = AccessFormat::kCombined;
       } else if (text == "json") {
         l.config.access_log_format = AccessFormat::kJson;
       } else {
         fail(s.label, quoted(text) + " is not an access log format (use combined or json)");
       }
     }},
    {"log_level",
     [](Loader& l, const Source& s) {
       std::string text = get_string(s);
       if (text != "error" && text != "warn" && text != "info" && text != "debug") {
         fail(s.label, quoted(text) + " is not a log level (use error, warn, info or debug)");
       }
       l.config.log_level = text;
     }},
};

std::string flag_name(std::string_view key) {
  std::string name(key);
  for (char& c : name) {
    if (c == '_') {
      c = '-';
    }
  }
  return name;
}

std::vector<UpstreamServer> get_servers(const std::vector<Source>& items) {
  std::vector<UpstreamServer> servers;
  for (const Source& item : items) {
    UpstreamServer server;
    if (item.node != nullptr && item.node->is_table()) {
      const toml::table& table = *item.node->as_table();
      bool has_address = false;
      for (auto&& [key, node] : table) {
        Source field{item.label + "." + std::string(key.str()), false, {}, &node};
        if (key.str() == "address") {
          server.endpoint = get_endpoint(field);
          has_address = true;
        } else if (key.str() == "weight") {
          server.weight = static_cast<int>(get_int(field, 1, 1000));
        } else {
          fail(field.label, "unknown key (use address, weight)");
        }
      }
      if (!has_address) {
        fail(item.label, "missing address");
      }
    } else {
      server.endpoint = get_endpoint(item);
    }
    servers.push_back(std::move(server));
  }
  return servers;
}

void load_group(Loader& l, std::string_view name, const Source& s) {
  const toml::table* table = s.node->as_table();
  if (table == nullptr) {
    fail_type(s, "a table");
  }
  GroupSpec spec;
  spec.group.name = std::string(name);
  spec.label = s.label;
  bool has_servers = false;
  for (auto&& [key, node] : *table) {
    std::string_view k = key.str();
    Source field{s.label + "." + std::string(k), false, {}, &node};
    UpstreamGroup& g = spec.group;
    if (k == "servers") {
      g.servers = get_servers(get_list(field));
      has_servers = true;
      if (g.servers.empty()) {
        fail(field.label, "needs at least one server");
      }
    } else if (k == "balance") {
      spec.own.balance = get_balance(field);
    } else if (k == "host") {
      g.host = get_string(field);
      if (g.host->empty()) {
        fail(field.label, "empty host");
      }
    } else if (k == "max_fails") {
      g.max_fails = static_cast<int>(get_int(field, 0, 1000));
    } else if (k == "fail_timeout") {
      g.fail_timeout = get_duration(field, 0);
    } else if (k == "health_check") {
      const toml::table* check = node.as_table();
      if (check == nullptr) {
        fail_type(field, "a table ({ path = \"/health\", interval = \"5s\" })");
      }
      for (auto&& [ckey, cnode] : *check) {
        Source cfield{field.label + "." + std::string(ckey.str()), false, {}, &cnode};
        if (ckey.str() == "path") {
          g.health_path = get_string(cfield);
          if (g.health_path.empty() || g.health_path[0] != '/') {
            fail(cfield.label, quoted(g.health_path) + " is not a path (it starts with /)");
          }
        } else if (ckey.str() == "interval") {
          g.health_interval = get_duration(cfield, 1);
        } else {
          fail(cfield.label, "unknown key (use path, interval)");
        }
      }
    } else if (k == "connect_timeout") {
      spec.own.connect_timeout = get_duration(field, 1);
    } else if (k == "read_timeout") {
      spec.own.read_timeout = get_duration(field, 1);
    } else if (k == "send_timeout") {
      spec.own.send_timeout = get_duration(field, 1);
    } else if (k == "next_upstream_tries") {
      spec.own.next_upstream_tries = static_cast<int>(get_int(field, 0, 1000));
    } else if (k == "next_upstream_timeout") {
      spec.own.next_upstream_timeout = get_duration(field, 0);
    } else if (k == "keepalive") {
      spec.own.keepalive = static_cast<std::size_t>(get_int(field, 0, 100'000));
    } else if (k == "keepalive_timeout") {
      spec.own.keepalive_timeout = get_duration(field, 1);
    } else {
      fail(field.label, "unknown key");
    }
  }
  if (!has_servers) {
    fail(s.label, "missing servers = [\"HOST:PORT\", ...]");
  }
  l.groups.push_back(std::move(spec));
}

void load_routes(Loader& l, const Source& s) {
  const toml::array* array = s.node->as_array();
  if (array == nullptr) {
    fail_type(s, "an array of tables ([[routes]])");
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    Source item{s.label + "[" + std::to_string(i) + "]", false, {}, array->get(i)};
    const toml::table* table = item.node->as_table();
    if (table == nullptr) {
      fail_type(item, "a table");
    }
    Route route;
    bool has_prefix = false;
    bool has_upstream = false;
    for (auto&& [key, node] : *table) {
      Source field{item.label + "." + std::string(key.str()), false, {}, &node};
      if (key.str() == "prefix") {
        route.prefix = get_string(field);
        has_prefix = true;
        if (route.prefix.empty() || route.prefix[0] != '/') {
          fail(field.label, quoted(route.prefix) + " is not a path prefix (it starts with /)");
        }
      } else if (key.str() == "upstream") {
        route.group = get_string(field);
        has_upstream = true;
      } else if (key.str() == "strip_prefix") {
        route.strip_prefix = get_bool(field);
      } else {
        fail(field.label, "unknown key (use prefix, upstream, strip_prefix)");
      }
    }
    if (!has_prefix) {
      fail(item.label, "missing prefix = \"/...\"");
    }
    if (!has_upstream) {
      fail(item.label, "missing upstream = \"GROUP\"");
    }
    l.config.routes.push_back(std::move(route));
    l.route_labels.push_back(item.label);
  }
}

std::vector<Cidr> get_cidrs(const std::vector<Source>& items) {
  std::vector<Cidr> cidrs;
  for (const Source& item : items) {
    Cidr cidr;
    std::string text = get_string(item);
    if (!parse_cidr(text, &cidr)) {
      fail(item.label, quoted(text) + " is not a CIDR block (use 10.0.0.0/8 or ::1/128)");
    }
    cidrs.push_back(cidr);
  }
  return cidrs;
}

void load_file(Loader& l, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    fail(path, std::string("cannot read: ") + std::strerror(errno));
  }
  std::string text;
  char buffer[8192];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    text.append(buffer, n);
  }
  bool read_error = std::ferror(file) != 0;
  int saved_errno = errno;
  std::fclose(file);
  if (read_error) {
    fail(path, std::string("cannot read: ") + std::strerror(saved_errno));
  }

  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    std::string description(e.description());
    for (char& c : description) {
      if (c == '\n' || c == '\r') {
        c = ' ';
      }
    }
    fail(path + ":" + std::to_string(e.source().begin.line) + ":" +
             std::to_string(e.source().begin.column),
         description);
  }

  l.file_label = path + ": ";
  for (auto&& [key, node] : root) {
    std::string_view k = key.str();
    Source s{l.file_label + std::string(k), false, {}, &node};
    if (k == "upstream") {
      l.default_servers = get_servers(get_list(s));
      if (l.default_servers->empty()) {
        fail(s.label, "needs at least one server");
      }
      continue;
    }
    if (k == "trusted_proxies") {
      l.config.trusted_proxies = get_cidrs(get_list(s));
      continue;
    }
    if (k == "upstreams") {
      const toml::table* groups = node.as_table();
      if (groups == nullptr) {
        fail_type(s, "a table ([upstreams.NAME])");
      }
      for (auto&& [name, group] : *groups) {
        load_group(l, name.str(),
                   Source{s.label + "." + std::string(name.str()), false, {}, &group});
      }
      continue;
    }
    if (k == "routes") {
      load_routes(l, s);
      continue;
    }
    bool known = false;
    for (const Key& entry : kKeys) {
      if (entry.name == k) {
        entry.set(l, s);
        known = true;
        break;
      }
    }
    if (!known) {
      fail(s.label, "unknown key");
    }
  }
}

std::string help_epilogue() {
  return "\nDURATION: 500ms, 3s, 2m, 1h or plain seconds (10). SIZE: 16k, 1m, 1g or plain bytes.\n"
         "Flags override the --config file (TOML: the same names with underscores, plus\n"
         "[upstreams.NAME] groups, [[routes]] and trusted_proxies; see configs/proxy.toml).\n"
         "Exit status: 0 after a clean drain (SIGTERM/SIGINT) or when --check finds the\n"
         "configuration valid; 2 for any configuration error (bad flag or file value, unknown\n"
         "or unavailable backend), with or without --check; 1 when serving fails.\n";
}

// cxxopts names the offending option between typographic quotes; take it out.
std::string option_in(const std::string& message) {
  std::size_t open = message.find("\xe2\x80\x98");
  std::size_t close = message.find("\xe2\x80\x99");
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return {};
  }
  return message.substr(open + 3, close - open - 3);
}

std::string dashed(const std::string& name) {
  if (name.rfind("-", 0) == 0) {
    return name;
  }
  return (name.size() == 1 ? "-" : "--") + name;
}

ConfigResult load(int argc, const char* const* argv) {
  cxxopts::Options options("gearbox",
                           "HTTP/1.1 echo server and reverse proxy: one sans-I/O core, "
                           "several concurrency backends.");
  options.set_width(100);
  options.custom_help("[--backend NAME] [--mode echo|proxy] [--listen ADDR:PORT] [OPTION...]");
  auto text = [] { return cxxopts::value<std::string>(); };
  auto list = [] { return cxxopts::value<std::vector<std::string>>(); };
  // clang-format off
  options.add_options("Program")
      ("backend", "concurrency backend (default uring where the host allows, else pool)", text(), "NAME")
      ("mode", "echo or proxy (default echo)", text(), "MODE")
      ("listen", "address to listen on (default 127.0.0.1:8080; port 0 = any)", text(), "ADDR:PORT")
      ("config", "TOML file; flags override its values", text(), "FILE")
      ("check", "validate the configuration, print `configuration ok` and exit")
      ("admin-listen", "serve /metrics and /status on this address (default off)", text(), "ADDR:PORT")
      ("access-log", "log one line per response to FILE, or - for stderr (default off)", text(), "FILE")
      ("access-log-format", "combined (nginx's, plus request time) or json (default combined)", text(), "FORMAT")
      ("log-level", "error, warn, info or debug (default info)", text(), "LEVEL")
      ("version", "print the version and exit")
      ("h,help", "print this help and exit");
  options.add_options("Backends")
      ("workers", "prefork: most worker processes (default 256); uring: event loops (default 1)", text(), "N")
      ("min-spare", "prefork: fewest idle workers (default 5)", text(), "N")
      ("max-spare", "prefork: most idle workers (default 10)", text(), "N")
      ("reuseport", "prefork: one SO_REUSEPORT listener per worker", cxxopts::value<bool>())
      ("sqpoll", "uring: a kernel thread polls the submission queue", cxxopts::value<bool>())
      ("threads", "pool/fiber: worker threads (default 0 = one per core)", text(), "N")
      ("thread-stack", "thread: stack size per connection thread (default 256k)", text(), "SIZE")
      ("fiber-stack", "fiber: stack size per connection fiber (default 64k)", text(), "SIZE")
      ("max-connections", "connections served at once (default 10000)", text(), "N")
      ("backlog", "listen(2) backlog (default 511)", text(), "N");
  options.add_options("Limits and timeouts")
      ("header-timeout", "time to receive a request head (default 10s)", text(), "DURATION")
      ("idle-timeout", "keep-alive wait for the next request (default 60s)", text(), "DURATION")
      ("body-timeout", "longest pause inside a request body (default 60s)", text(), "DURATION")
      ("send-timeout", "longest stall writing to a client (default 60s)", text(), "DURATION")
      ("drain-timeout", "grace period after SIGTERM/SIGINT (default 10s)", text(), "DURATION")
      ("max-body", "largest request body, 0 = unlimited (default 1m)", text(), "SIZE")
      ("max-header", "largest request head (default 16k)", text(), "SIZE")
      ("max-headers", "most header fields (default 100)", text(), "N");
  options.add_options("Proxy")
      ("upstream", "upstream server (repeatable): group `default`, route /", list(), "HOST:PORT")
      ("balance", "round-robin or least-conn (default round-robin)", text(), "METHOD")
      ("proxy-connect-timeout", "upstream connect timeout (default 5s)", text(), "DURATION")
      ("proxy-read-timeout", "longest wait for upstream bytes (default 60s)", text(), "DURATION")
      ("proxy-send-timeout", "longest stall writing upstream (default 60s)", text(), "DURATION")
      ("proxy-next-upstream-tries", "most servers tried per request (default 0 = all)", text(), "N")
      ("proxy-keepalive", "idle upstream connections kept per server, per worker (default 256)", text(), "N")
      ("proxy-keepalive-timeout", "an idle upstream connection is closed after (default 60s)", text(), "DURATION")
      ("proxy-next-upstream-timeout", "no new try after this (default 0 = no limit)", text(), "DURATION")
      ("trusted-proxy", "peer whose X-Forwarded-For is kept (repeatable)", list(), "CIDR");
  // clang-format on

  ConfigResult result;
  cxxopts::ParseResult flags;
  try {
    flags = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::no_such_option& e) {
    fail(dashed(option_in(e.what())), "unknown flag (see --help)");
  } catch (const cxxopts::exceptions::missing_argument& e) {
    fail(dashed(option_in(e.what())), "needs a value");
  } catch (const cxxopts::exceptions::option_requires_argument& e) {
    fail(dashed(option_in(e.what())), "needs a value");
  } catch (const cxxopts::exceptions::incorrect_argument_type& e) {
    throw ConfigError{quoted(option_in(e.what())) +
                      " is not true or false (switches take =true, =false or no value)"};
  } catch (const cxxopts::exceptions::exception& e) {
    std::string what = e.what();
    std::string name = option_in(what);
    fail(name.empty() ? "gearbox" : name, name.empty() ? what : "not a valid flag (see --help)");
  }
  if (!flags.unmatched().empty()) {
    fail(quoted(flags.unmatched().front()), "unexpected argument (see --help)");
  }

  if (flags.count("help") > 0) {
    result.ok = true;
    result.help = true;
    result.exit_now = true;
    result.output =
        options.help({"Program", "Backends", "Limits and timeouts", "Proxy"}) + help_epilogue();
    return result;
  }
  if (flags.count("version") > 0) {
    result.ok = true;
    result.exit_now = true;
    result.version = true;
    result.output = "gearbox " GEARBOX_VERSION "\n";
    return result;
  }

  Loader l;
  if (flags.count("config") > 0) {
    l.config.config_file = flags["config"].as<std::string>();
    load_file(l, l.config.config_file);
  }

  for (const Key& key : kKeys) {
    std::string name = flag_name(key.name);
    if (flags.count(name) == 0) {
      continue;
    }
    Source s{"--" + name, true, {}, nullptr};
    if (name == "reuseport" || name == "sqpoll") {
      s.text = flags[name].as<bool>() ? "true" : "false";
    } else {
      s.text = flags[name].as<std::string>();
    }
    key.set(l, s);
  }
  if (flags.count("upstream") > 0) {
    std::vector<Source> items;
    for (const std::string& item : flags["upstream"].as<std::vector<std::string>>()) {
      items.push_back(Source{"--upstream", true, item, nullptr});
    }
    l.default_servers = get_servers(items);
  }
  if (flags.count("trusted-proxy") > 0) {
    std::vector<Source> items;
    for (const std::string& item : flags["trusted-proxy"].as<std::vector<std::string>>()) {
      items.push_back(Source{"--trusted-proxy", true, item, nullptr});
    }
    l.config.trusted_proxies = get_cidrs(items);
  }

  // Groups: the file's, then `default` from --upstream (or the file's `upstream`), which
  // replaces a file group of that name and takes the route "/".
  Config& c = l.config;
  if (l.default_servers) {
    std::erase_if(l.groups, [](const GroupSpec& g) { return g.group.name == "default"; });
    GroupSpec spec;
    spec.group.name = "default";
    spec.group.servers = *l.default_servers;
    spec.label = "--upstream";
    l.groups.insert(l.groups.begin(), std::move(spec));
    bool routed = false;
    for (Route& route : c.routes) {
      if (route.prefix == "/") {
        route.group = "default";
        routed = true;
      }
    }
    if (!routed) {
      c.routes.push_back(Route{"/", "default", false});
      l.route_labels.push_back("--upstream");
    }
  }
  for (GroupSpec& spec : l.groups) {
    UpstreamGroup& g = spec.group;
    const ProxyDefaults& own = spec.own;
    const ProxyDefaults& flag = l.flag_defaults;
    const ProxyDefaults& file = l.file_defaults;
    g.balance = flag.balance.value_or(own.balance.value_or(file.balance.value_or(g.balance)));
    g.connect_timeout = flag.connect_timeout.value_or(
        own.connect_timeout.value_or(file.connect_timeout.value_or(g.connect_timeout)));
    g.read_timeout = flag.read_timeout.value_or(
        own.read_timeout.value_or(file.read_timeout.value_or(g.read_timeout)));
    g.send_timeout = flag.send_timeout.value_or(
        own.send_timeout.value_or(file.send_timeout.value_or(g.send_timeout)));
    g.keepalive =
        flag.keepalive.value_or(own.keepalive.value_or(file.keepalive.value_or(g.keepalive)));
    g.keepalive_timeout = flag.keepalive_timeout.value_or(
        own.keepalive_timeout.value_or(file.keepalive_timeout.value_or(g.keepalive_timeout)));
    g.next_upstream_tries = flag.next_upstream_tries.value_or(
        own.next_upstream_tries.value_or(file.next_upstream_tries.value_or(g.next_upstream_tries)));
    g.next_upstream_timeout =
        flag.next_upstream_timeout.value_or(own.next_upstream_timeout.value_or(
            file.next_upstream_timeout.value_or(g.next_upstream_timeout)));
    c.groups.push_back(std::move(g));
  }

  for (std::size_t i = 0; i < c.routes.size(); ++i) {
    const Route& route = c.routes[i];
    bool known = std::any_of(c.groups.begin(), c.groups.end(),
                             [&](const UpstreamGroup& g) { return g.name == route.group; });
    if (!known) {
      fail(l.route_labels[i] + ".upstream", quoted(route.group) + " is not a group in [upstreams]");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (c.routes[j].prefix == route.prefix) {
        fail(l.route_labels[i] + ".prefix", quoted(route.prefix) + " is routed twice");
      }
    }
  }
  if (c.routes.empty() && c.groups.size() > 1) {
    fail(l.file_label + "routes",
         "several upstream groups but no [[routes]] to choose between them");
  }
  if (c.mode == Mode::kProxy && c.groups.empty()) {
    fail(l.mode_label,
         "proxy mode needs an upstream (--upstream HOST:PORT or [upstreams.NAME] in the file)");
  }
  if (!c.admin_listen.empty()) {
    std::string host, admin_host;
    int port = 0, admin_port = 0;
    split_host_port(c.listen, &host, &port);
    split_host_port(c.admin_listen, &admin_host, &admin_port);
    if (admin_port != 0 && admin_port == port) {
      fail(l.admin_label, quoted(c.admin_listen) +
                              " is the serving port: the admin endpoint needs one of its own");
    }
  }
  if (c.min_spare > c.max_spare && !l.max_spare_label.empty()) {
    fail(l.max_spare_label, std::to_string(c.max_spare) + " is less than min_spare (" +
                                std::to_string(c.min_spare) + ")");
  }
  if (c.min_spare > c.max_spare) {
    fail(l.min_spare_label, std::to_string(c.min_spare) + " is more than max_spare (" +
                                std::to_string(c.max_spare) + ")");
  }

  result.config = std::move(l.config);
  result.ok = true;
  result.check = flags.count("check") > 0;
  result.backend_source = l.backend_source;
  return result;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  if (digits == 0 || digits > 12) {
    return std::nullopt;
  }
  auto value = parse_int(text.substr(0, digits));
  std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit == "ms") {
    scale = 1;
  } else if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else {
    return std::nullopt;
  }
  if (!value || *value > kMaxDurationMs / scale) {
    return std::nullopt;
  }
  return Duration(*value * scale);
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  if (digits == 0 || digits > 15) {
    return std::nullopt;
  }
  auto value = parse_int(text.substr(0, digits));
  std::string_view unit = text.substr(digits);
  std::uint64_t scale = 0;
  if (unit.empty()) {
    scale = 1;
  } else if (unit == "k" || unit == "K") {
    scale = 1024;
  } else if (unit == "m" || unit == "M") {
    scale = 1024 * 1024;
  } else if (unit == "g" || unit == "G") {
    scale = 1024 * 1024 * 1024;
  } else {
    return std::nullopt;
  }
  if (!value || static_cast<std::uint64_t>(*value) > kMaxSize / scale) {
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(*value) * scale;
}

bool split_host_port(std::string_view text, std::string* host, int* port) {
  std::string_view h;
  std::string_view p;
  if (!text.empty() && text[0] == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return false;
    }
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    if (h.find(':') != std::string_view::npos) {
      return false;  // an IPv6 address needs brackets
    }
  }
  if (h.empty() || p.empty() || p.size() > 5 ||
      p.find_first_not_of("0123456789") != std::string_view::npos) {
    return false;
  }
  auto number = parse_int(p);
  if (!number || *number > 65'535) {
    return false;
  }
  *host = std::string(h);
  *port = static_cast<int>(*number);
  return true;
}

namespace {

std::string endpoint_text(const sockaddr_storage& addr) {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &v4->sin_addr, buffer, sizeof buffer);
    return std::string(buffer) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&addr);
  inet_ntop(AF_INET6, &v6->sin6_addr, buffer, sizeof buffer);
  return "[" + std::string(buffer) + "]:" + std::to_string(ntohs(v6->sin6_port));
}

}  // namespace

bool resolve_endpoint(std::string_view text, Endpoint* out, std::string* error) {
  std::string host;
  int port = 0;
  if (!split_host_port(text, &host, &port) || port == 0) {
    *error = quoted(text) + " is not HOST:PORT";
    return false;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    *error = "cannot resolve " + quoted(host) + ": " + gai_strerror(rc);
    return false;
  }
  const addrinfo* pick = found;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
  }
  Endpoint endpoint;
  std::memcpy(&endpoint.addr, pick->ai_addr, pick->ai_addrlen);
  endpoint.len = static_cast<socklen_t>(pick->ai_addrlen);
  freeaddrinfo(found);
  endpoint.text = endpoint_text(endpoint.addr);
  *out = std::move(endpoint);
  return true;
}

bool parse_cidr(std::string_view text, Cidr* out) {
  std::size_t slash = text.find('/');
  std::string address(text.substr(0, slash));
  Cidr cidr;
  unsigned char* bytes = nullptr;
  int max_bits = 0;
  if (auto* v4 = reinterpret_cast<sockaddr_in*>(&cidr.base);
      inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    bytes = reinterpret_cast<unsigned char*>(&v4->sin_addr);
    max_bits = 32;
  } else if (auto* v6 = reinterpret_cast<sockaddr_in6*>(&cidr.base);
             inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    bytes = reinterpret_cast<unsigned char*>(&v6->sin6_addr);
    max_bits = 128;
  } else {
    return false;
  }
  cidr.bits = max_bits;
  if (slash != std::string_view::npos) {
    std::string_view bits = text.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 ||
        bits.find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
    auto number = parse_int(bits);
    if (!number || *number > max_bits) {
      return false;
    }
    cidr.bits = static_cast<int>(*number);
  }
  for (int bit = cidr.bits; bit < max_bits; ++bit) {
    bytes[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
  }
  *out = cidr;
  return true;
}

std::string_view balance_name(Balance balance) {
  return balance == Balance::kLeastConnections ? "least-conn" : "round-robin";
}

std::string_view mode_name(Mode mode) {
  return mode == Mode::kProxy ? "proxy" : "echo";
}

ConfigResult load_config(int argc, const char* const* argv) {
  try {
    return load(argc, argv);
  } catch (const ConfigError& e) {
    ConfigResult result;
    result.ok = false;
    result.error = e.line;
    result.exit_now = true;
    result.exit_status = kConfigErrorStatus;
    return result;
  } catch (const std::exception& e) {
    ConfigResult result;
    result.ok = false;
    result.error = std::string("configuration: ") + e.what();
    result.exit_now = true;
    result.exit_status = kConfigErrorStatus;
    return result;
  }
}

}  // namespace gearbox::core
