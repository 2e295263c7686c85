// HTTP/1.1 head and chunk-framing writers (RFC 9112 §4, §3, §5, §7.1).
#include "http/serializer.hpp"

#include <charconv>

#include "http/error.hpp"

namespace gearbox::http {

void append_status_line(std::string& out, int status) {
  char digits[8];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
  (void)ec;
  out.append("HTTP/1.1 ");
  out.append(digits, end);
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\n");
}

void append_request_line(std::string& out, std::string_view method, std::string_view target) {
  out.append(method);
  out.push_back(' ');
  out.append(target);
  out.append(" HTTP/1.1\r\n");
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void append_field(std::string& out, std::string_view name, std::uint64_t value) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  (void)ec;
  append_field(out, name, std::string_view(digits, static_cast<std::size_t>(end - digits)));
}

void end_head(std::string& out) {
  out.append("\r\n");
}

std::string_view chunk_header(char* buf, std::size_t n) {
  auto [end, ec] = std::to_chars(buf, buf + kChunkHeaderMax - 2, n, 16);
  (void)ec;
  *end++ = '\r';
  *end++ = '\n';
  return std::string_view(buf, static_cast<std::size_t>(end - buf));
}

bool response_has_body(bool head_request, int status) {
  if (head_request) {
    return false;
  }
  return !(status < 200 || status == 204 || status == 304);
}

}  // namespace gearbox::http
