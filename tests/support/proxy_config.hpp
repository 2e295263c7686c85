// A proxy-mode configuration for driving the core without sockets: one upstream group,
// "default", of `servers` servers on 127.0.0.1:9000, :9001, ... (never connected to: the core
// only names them; the harness or the benchmark plays the upstream).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "server/config.hpp"

namespace gearbox::test {

inline core::Config proxy_config(int servers = 1) {
  core::Config cfg;
  cfg.mode = core::Mode::kProxy;
  core::UpstreamGroup g;
  g.name = "default";
  for (int i = 0; i < servers; ++i) {
    core::UpstreamServer s;
    auto* sin = reinterpret_cast<sockaddr_in*>(&s.endpoint.addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<std::uint16_t>(9000 + i));
    inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
    s.endpoint.len = sizeof(sockaddr_in);
    s.endpoint.text = "127.0.0.1:" + std::to_string(9000 + i);
    g.servers.push_back(s);
  }
  cfg.groups.push_back(g);
  return cfg;
}

}  // namespace gearbox::test
