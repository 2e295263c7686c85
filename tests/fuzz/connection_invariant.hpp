// The whole-connection fuzz invariant, shared by the libFuzzer target and the corpus replay in
// the unit tests. Input: byte 0 picks echo or proxy mode and the upstream's answer; the rest is
// what the client sends. Invariant: fed whole or a byte at a time, read into the span the core
// lends or handed over from the driver's memory (on_client_data), the core never crashes, the
// two ways of reading give the same bytes out, and once the client has sent EOF and enough time
// has passed the connection is done (no hang, no connection left waiting forever).
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <string>
#include <string_view>

#include "tests/support/core_harness.hpp"

namespace gearbox::fuzz {

inline constexpr std::string_view kUpstreamAnswers[] = {
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.0 200 OK\r\n\r\nuntil close",
    "",
};

// "" when the invariant holds, else what broke.
inline std::string check_connection(std::string_view data) {
  if (data.empty()) {
    return "";
  }
  const auto selector = static_cast<unsigned char>(data[0]);
  const std::string client(data.substr(1));
  std::string lent_output[2];
  for (int run = 0; run < 4; ++run) {
    const std::size_t piece = run % 2;
    const bool owned = run >= 2;
    core::Config cfg;
    cfg.limits.max_header = 512;
    cfg.limits.max_headers = 8;
    cfg.limits.max_body = 4096;
    if (selector & 1) {
      cfg.mode = core::Mode::kProxy;
      core::UpstreamGroup g;
      g.name = "default";
      core::UpstreamServer s;
      s.endpoint.addr.ss_family = AF_INET;
      s.endpoint.len = sizeof(sockaddr_in);
      s.endpoint.text = "127.0.0.1:9";
      g.servers.push_back(s);
      cfg.groups.push_back(g);
    }
    test::CoreHarness h(cfg, owned);
    h.piece = piece;
    h.upstream_script =
        std::string(kUpstreamAnswers[(selector >> 1) % std::size(kUpstreamAnswers)]);
    h.upstream_eof = (selector & 0x80) != 0;
    h.upstream_refuses = (selector & 0x40) != 0 && (selector & 0x20) != 0;
    h.send(client);
    h.run();
    h.send_eof();
    h.run();
    for (int minute = 0; minute < 30 && !h.closed(); ++minute) {
      h.advance(std::chrono::minutes(1));
    }
    if (!h.closed()) {
      return "connection not done 30 minutes after the client's EOF (piece " +
             std::to_string(piece) + (owned ? ", handed over" : "") + ")";
    }
    if (!owned) {
      lent_output[piece] = h.output();
    } else if (h.output() != lent_output[piece]) {
      return "handing the bytes over gave other output than lending a span (piece " +
             std::to_string(piece) + ")";
    }
  }
  return "";
}

}  // namespace gearbox::fuzz
