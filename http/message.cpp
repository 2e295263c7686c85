// Header storage (one arena per message, reused), token lists, the hop-by-hop table and method
// names (RFC 9110 §5, §7.6.1, §9).
#include "http/message.hpp"

#include <array>

namespace gearbox::http {

namespace {

constexpr char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

bool has_token(std::string_view list, std::string_view token) {
  bool found = false;
  for_each_token(list, [&](std::string_view t) {
    if (!found && iequals(t, token)) {
      found = true;
    }
  });
  return found;
}

bool is_hop_by_hop(std::string_view name) {
  // Proxy-Authenticate / Proxy-Authorization are between a client and a proxy that asks for
  // credentials (RFC 9110 §11.7): gearbox asks for none, and must not leak them to an upstream
  // (Go's httputil.ReverseProxy drops them too).
  static constexpr std::array<std::string_view, 9> kHop = {"Connection",
                                                           "Keep-Alive",
                                                           "Proxy-Connection",
                                                           "TE",
                                                           "Trailer",
                                                           "Transfer-Encoding",
                                                           "Upgrade",
                                                           "Proxy-Authenticate",
                                                           "Proxy-Authorization"};
  for (std::string_view h : kHop) {
    if (iequals(name, h)) {
      return true;
    }
  }
  return false;
}

void Headers::clear() {
  arena_.clear();
  fields_.clear();
}

void Headers::add(std::string_view name, std::string_view value) {
  begin_field();
  append_name(name);
  append_value(value);
}

void Headers::begin_field() {
  const auto off = static_cast<std::uint32_t>(arena_.size());
  fields_.push_back(Slot{off, 0, off, 0});
}

void Headers::append_name(std::string_view part) {
  Slot& s = fields_.back();
  arena_.append(part);
  s.name_len += static_cast<std::uint32_t>(part.size());
  s.value_off = static_cast<std::uint32_t>(arena_.size());
}

void Headers::append_value(std::string_view part) {
  Slot& s = fields_.back();
  arena_.append(part);
  s.value_len += static_cast<std::uint32_t>(part.size());
}

Field Headers::operator[](std::size_t i) const {
  const Slot& s = fields_[i];
  std::string_view a = arena_;
  return Field{a.substr(s.name_off, s.name_len), a.substr(s.value_off, s.value_len)};
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    Field f = (*this)[i];
    if (iequals(f.name, name)) {
      return f.value;
    }
  }
  return std::nullopt;
}

std::size_t Headers::count(std::string_view name) const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    if (iequals((*this)[i].name, name)) {
      ++n;
    }
  }
  return n;
}

Method method_from(std::string_view name) {
  // Method names are case-sensitive (RFC 9110 §9.1).
  switch (name.size()) {
    case 3:
      if (name == "GET")
        return Method::kGet;
      if (name == "PUT")
        return Method::kPut;
      break;
    case 4:
      if (name == "HEAD")
        return Method::kHead;
      if (name == "POST")
        return Method::kPost;
      break;
    case 5:
      if (name == "TRACE")
        return Method::kTrace;
      if (name == "PATCH")
        return Method::kPatch;
      break;
    case 6:
      if (name == "DELETE")
        return Method::kDelete;
      break;
    case 7:
      if (name == "CONNECT")
        return Method::kConnect;
      if (name == "OPTIONS")
        return Method::kOptions;
      break;
    default:
      break;
  }
  return Method::kOther;
}

bool is_idempotent(Method m) {
  switch (m) {
    case Method::kGet:
    case Method::kHead:
    case Method::kOptions:
    case Method::kTrace:
    case Method::kPut:
    case Method::kDelete:
      return true;
    default:
      return false;
  }
}

void RequestHead::clear() {
  method.clear();
  method_kind = Method::kOther;
  target.clear();
  version_minor = 1;
  headers.clear();
  framing = Framing::kNone;
  content_length = 0;
  keep_alive = true;
  expect_continue = false;
  upgrade = false;
}

void ResponseHead::clear() {
  status = 0;
  reason.clear();
  version_minor = 1;
  headers.clear();
  framing = Framing::kNone;
  content_length = 0;
  keep_alive = true;
}

}  // namespace gearbox::http
