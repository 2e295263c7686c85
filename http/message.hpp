// HTTP message heads as data: header fields (order kept, case-insensitive lookup), Connection
// tokens, the hop-by-hop table, request and response heads. No I/O, no llhttp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gearbox::http {

// ASCII case-insensitive equality (field names, tokens: RFC 9110 §5.1).
bool iequals(std::string_view a, std::string_view b);

// Calls f(token) for each element of a comma-separated list (RFC 9110 §5.6.1), with optional
// whitespace trimmed and empty elements skipped. Quoted strings are not special-cased: the
// lists we read (Connection, Transfer-Encoding, Upgrade) are token lists.
template <typename F>
void for_each_token(std::string_view list, F&& f) {
  std::size_t i = 0;
  while (i <= list.size()) {
    std::size_t comma = list.find(',', i);
    if (comma == std::string_view::npos) {
      comma = list.size();
    }
    std::string_view t = list.substr(i, comma - i);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) {
      t.remove_prefix(1);
    }
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) {
      t.remove_suffix(1);
    }
    if (!t.empty()) {
      f(t);
    }
    i = comma + 1;
  }
}

// True when the comma-separated list holds `token` as a whole element (never a substring).
bool has_token(std::string_view list, std::string_view token);

// Hop-by-hop fields a proxy never forwards (RFC 9110 §7.6.1), besides those Connection names:
// Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
// Proxy-Authenticate, Proxy-Authorization.
bool is_hop_by_hop(std::string_view name);

struct Field {
  std::string_view name;
  std::string_view value;
};

// Header fields backed by one arena string, reused across messages so that a connection in a
// steady state does not allocate. Views returned stay valid until clear() or the next add().
class Headers {
 public:
  void clear();
  // Appends a field; `name` and `value` are copied.
  void add(std::string_view name, std::string_view value);
  // Appends bytes to the name or value of the last field (the parser receives them in pieces).
  void begin_field();
  void append_name(std::string_view part);
  void append_value(std::string_view part);

  std::size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  Field operator[](std::size_t i) const;
  // First value of `name`, case-insensitively.
  std::optional<std::string_view> get(std::string_view name) const;
  std::size_t count(std::string_view name) const;
  // Bytes held by names and values (for the header-size limit).
  std::size_t bytes() const { return arena_.size(); }

  class Iterator {
   public:
    Iterator(const Headers* h, std::size_t i) : h_(h), i_(i) {}
    Field operator*() const { return (*h_)[i_]; }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator!=(const Iterator& o) const { return i_ != o.i_; }

   private:
    const Headers* h_;
    std::size_t i_;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, fields_.size()}; }

 private:
  struct Slot {
    std::uint32_t name_off, name_len, value_off, value_len;
  };
  std::string arena_;
  std::vector<Slot> fields_;
};

enum class Method : std::uint8_t {
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kConnect,
  kOptions,
  kTrace,
  kPatch,
  kOther
};
Method method_from(std::string_view name);
// Safe methods plus PUT and DELETE (RFC 9110 §9.2.2): may be retried by a proxy.
bool is_idempotent(Method m);

// How a message body is delimited (RFC 9112 §6.3).
enum class Framing : std::uint8_t {
  kNone,        // no body
  kLength,      // Content-Length
  kChunked,     // Transfer-Encoding: chunked
  kUntilClose,  // response only: read until the connection closes
};

struct RequestHead {
  // Strings keep their capacity across messages (clear() does not free): no steady-state
  // allocation.
  std::string method;  // as received
  Method method_kind = Method::kOther;
  std::string target;     // request-target as received
  int version_minor = 1;  // HTTP/1.<minor>
  Headers headers;
  Framing framing = Framing::kNone;
  std::uint64_t content_length = 0;  // when framing == kLength
  bool keep_alive = true;            // after this exchange, per version and Connection
  bool expect_continue = false;      // Expect: 100-continue
  bool upgrade = false;              // Connection: upgrade with an Upgrade field, or CONNECT
  void clear();
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  int version_minor = 1;
  Headers headers;
  Framing framing = Framing::kNone;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  void clear();
};

}  // namespace gearbox::http
