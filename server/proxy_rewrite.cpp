// Request and response head rewriting for the reverse proxy (RFC 9110 §7.6), after Go's
// httputil.ReverseProxy (hopHeaders, removeConnectionHeaders) and nginx's proxy module.
#include "server/proxy_rewrite.hpp"

#include "http/serializer.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "http/error.hpp"

namespace gearbox::core {
namespace {

// RFC 9110 §7.6.1: the fields a message's Connection options name are hop-by-hop for it. The
// options are gathered once per head (one pass over its fields), so that each field's check
// looks at the options only, not at every field again.
class ConnectionOptions {
 public:
  explicit ConnectionOptions(const http::Headers& headers) {
    for (http::Field f : headers) {
      if (!http::iequals(f.name, "Connection")) {
        continue;
      }
      http::for_each_token(f.value, [&](std::string_view t) {
        if (count_ < kInline) {
          inline_[count_++] = t;
        } else {
          more_.push_back(t);
        }
      });
    }
  }
  bool names(std::string_view name) const {
    for (std::size_t i = 0; i < count_; ++i) {
      if (http::iequals(inline_[i], name)) {
        return true;
      }
    }
    for (std::string_view t : more_) {
      if (http::iequals(t, name)) {
        return true;
      }
    }
    return false;
  }

 private:
  static constexpr std::size_t kInline = 8;
  std::string_view inline_[kInline];
  std::size_t count_ = 0;
  std::vector<std::string_view> more_;  // past kInline options (rare; never allocates before)
};

// Appends every value of `name`, comma-joined (RFC 9110 §5.3), unless a Connection option
// names it (`options`, when given); returns whether anything was written.
bool append_joined(std::string& out, const http::Headers& headers, std::string_view name,
                   const ConnectionOptions* options) {
  if (options != nullptr && options->names(name)) {
    return false;
  }
  bool any = false;
  for (http::Field f : headers) {
    if (!http::iequals(f.name, name) || f.value.empty()) {
      continue;
    }
    if (any) {
      out.append(", ");
    }
    out.append(f.value);
    any = true;
  }
  return any;
}

// Begins "Name: "; the caller appends the value and calls end_field.
void begin_field(std::string& out, std::string_view name) {
  out.append(name);
  out.append(": ");
}
void end_field(std::string& out) {
  out.append("\r\n");
}

// Fields the rewrite sets itself; the incoming ones are never copied through.
bool is_request_managed(std::string_view name) {
  return http::iequals(name, "Host") || http::iequals(name, "Content-Length") ||
         http::iequals(name, "X-Forwarded-For") || http::iequals(name, "X-Forwarded-Proto") ||
         http::iequals(name, "X-Forwarded-Host") || http::iequals(name, "Via");
}

void append_via(std::string& out, const http::Headers& headers, const ConnectionOptions& options,
                int version_minor, std::string_view pseudonym) {
  begin_field(out, "Via");
  if (append_joined(out, headers, "Via", &options)) {
    out.append(", ");
  }
  out.append("1.");
  out.push_back(static_cast<char>('0' + (version_minor == 0 ? 0 : 1)));
  out.push_back(' ');
  out.append(pseudonym);
  end_field(out);
}

void append_upgrade(std::string& out, const http::Headers& headers) {
  http::append_field(out, "Connection", "upgrade");
  begin_field(out, "Upgrade");
  // "Connection: upgrade" names Upgrade by design (RFC 9110 §7.8).
  append_joined(out, headers, "Upgrade", nullptr);
  end_field(out);
}

// The framing fields we set ourselves (RFC 9112 §6): the incoming ones were dropped.
void append_framing(std::string& out, http::Framing framing, std::uint64_t content_length) {
  switch (framing) {
    case http::Framing::kLength:
      http::append_field(out, "Content-Length", content_length);
      break;
    case http::Framing::kChunked:
      http::append_field(out, "Transfer-Encoding", "chunked");
      break;
    case http::Framing::kNone:
    case http::Framing::kUntilClose:
      break;
  }
}

}  // namespace

void write_upstream_request_head(std::string& out, const http::RequestHead& req,
                                 std::string_view target, const RequestRewrite& rw) {
  out.append(req.method);
  out.push_back(' ');
  out.append(target);
  out.append(" HTTP/1.1\r\n");
  http::append_field(out, "Host", rw.host);

  const ConnectionOptions options(req.headers);
  for (http::Field f : req.headers) {
    if (http::is_hop_by_hop(f.name) || is_request_managed(f.name) ||
        (rw.strip_expect && http::iequals(f.name, "Expect")) || options.names(f.name)) {
      continue;
    }
    http::append_field(out, f.name, f.value);
  }

  // A client outside trusted_proxies must not choose the address the upstream sees.
  begin_field(out, "X-Forwarded-For");
  if (rw.client_trusted && append_joined(out, req.headers, "X-Forwarded-For", &options)) {
    out.append(", ");
  }
  out.append(rw.client_address);
  end_field(out);

  begin_field(out, "X-Forwarded-Proto");
  if (!rw.client_trusted || !append_joined(out, req.headers, "X-Forwarded-Proto", &options)) {
    out.append(rw.proto);
  }
  end_field(out);

  std::size_t mark = out.size();
  begin_field(out, "X-Forwarded-Host");
  bool have_host =
      rw.client_trusted && append_joined(out, req.headers, "X-Forwarded-Host", &options);
  if (!have_host && !rw.client_host.empty()) {
    out.append(rw.client_host);
    have_host = true;
  }
  if (!have_host) {
    have_host = append_joined(out, req.headers, "Host", &options);
  }
  if (have_host) {
    end_field(out);
  } else {
    out.resize(mark);
  }

  append_via(out, req.headers, options, req.version_minor, rw.via_pseudonym);

  append_framing(out, rw.framing, rw.content_length);
  if (rw.upgrade) {
    append_upgrade(out, req.headers);
  }
  out.append("\r\n");
}

void write_client_response_head(std::string& out, const http::ResponseHead& resp,
                                const ResponseRewrite& rw) {
  out.append("HTTP/1.1 ");
  char buf[8];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, resp.status);
  (void)ec;
  out.append(buf, static_cast<std::size_t>(end - buf));
  out.push_back(' ');
  out.append(resp.reason.empty() ? http::reason_phrase(resp.status)
                                 : std::string_view(resp.reason));
  out.append("\r\n");

  // RFC 9110 §8.6: no Content-Length in a 1xx or 204 response.
  bool pass_length = rw.framing == http::Framing::kNone && resp.status >= 200 && resp.status != 204;
  const ConnectionOptions options(resp.headers);
  for (http::Field f : resp.headers) {
    if (http::is_hop_by_hop(f.name) || http::iequals(f.name, "Via") ||
        (http::iequals(f.name, "Content-Length") && !pass_length) || options.names(f.name)) {
      continue;
    }
    http::append_field(out, f.name, f.value);
  }

  append_via(out, resp.headers, options, resp.version_minor, rw.via_pseudonym);

  append_framing(out, rw.framing, rw.content_length);
  if (rw.upgrade) {
    append_upgrade(out, resp.headers);
  } else if (rw.close) {
    http::append_field(out, "Connection", "close");
  } else if (rw.client_http10) {
    http::append_field(out, "Connection", "keep-alive");
  }
  out.append("\r\n");
}

namespace {

bool prefix_equal(const unsigned char* a, const unsigned char* b, int bits) {
  int bytes = bits / 8;
  if (std::memcmp(a, b, static_cast<std::size_t>(bytes)) != 0) {
    return false;
  }
  int rest = bits % 8;
  if (rest == 0) {
    return true;
  }
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

}  // namespace

bool is_trusted(const sockaddr_storage& addr, const std::vector<Cidr>& trusted) {
  const unsigned char* v4 = nullptr;
  const unsigned char* v6 = nullptr;
  if (addr.ss_family == AF_INET) {
    v4 = reinterpret_cast<const unsigned char*>(
        &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr);
  } else if (addr.ss_family == AF_INET6) {
    const in6_addr* a6 = &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr;
    v6 = reinterpret_cast<const unsigned char*>(a6);
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
      v4 = v6 + 12;
    }
  } else {
    return false;
  }
  for (const Cidr& c : trusted) {
    if (c.base.ss_family == AF_INET && v4 != nullptr) {
      const auto* b = reinterpret_cast<const unsigned char*>(
          &reinterpret_cast<const sockaddr_in*>(&c.base)->sin_addr);
      if (prefix_equal(v4, b, std::clamp(c.bits, 0, 32))) {
        return true;
      }
    } else if (c.base.ss_family == AF_INET6 && v6 != nullptr) {
      const auto* b = reinterpret_cast<const unsigned char*>(
          &reinterpret_cast<const sockaddr_in6*>(&c.base)->sin6_addr);
      if (prefix_equal(v6, b, std::clamp(c.bits, 0, 128))) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace gearbox::core
