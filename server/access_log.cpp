// Access-log line formatting (combined and JSON). Pure computation: no clock, no I/O.
#include "server/access_log.hpp"

#include <cstdio>

#include "server/http_date.hpp"

namespace gearbox::core {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";

// nginx's escaping of logged variables: `"`, `\` and bytes outside printable ASCII as \xHH.
void append_escaped(std::string& out, std::string_view text) {
  if (text.empty()) {
    out.push_back('-');
    return;
  }
  for (unsigned char c : text) {
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      out.append("\\x");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
}

// A JSON string (RFC 8259 §7): control characters, `"` and `\` escaped; other bytes as they
// are, except bytes >= 0x80, escaped as \u00XX so that the line stays valid UTF-8 whatever the
// client sent.
void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

// Seconds with millisecond resolution, as nginx's $request_time ("0.003").
void append_seconds(std::string& out, std::chrono::nanoseconds t) {
  char text[32];
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t).count();
  int n = std::snprintf(text, sizeof text, "%lld.%03lld", static_cast<long long>(ms / 1000),
                        static_cast<long long>(ms % 1000));
  out.append(text, static_cast<std::size_t>(n));
}

void append_json_seconds(std::string& out, std::chrono::nanoseconds t) {
  if (t.count() < 0) {
    out.append("null");
    return;
  }
  append_seconds(out, t);
}

UtcTime utc(std::chrono::nanoseconds wall) {
  return utc_time(std::chrono::duration_cast<std::chrono::seconds>(wall).count());
}

void append_request_line(std::string& out, const AccessRecord& r) {
  if (r.method.empty()) {
    out.push_back('-');
    return;
  }
  append_escaped(out, r.method);
  out.push_back(' ');
  append_escaped(out, r.target);
  out.append(r.version_minor == 0 ? " HTTP/1.0" : " HTTP/1.1");
}

void format_combined(std::string& out, const AccessRecord& r) {
  UtcTime u = utc(r.wall);
  char time[48];
  int printed = std::snprintf(time, sizeof time, "[%02u/%.3s/%04lld:%02u:%02u:%02u +0000]", u.day,
                              month_abbrev(u.month).data(), static_cast<long long>(u.year), u.hour,
                              u.minute, u.second);
  std::size_t n = printed > 0 ? static_cast<std::size_t>(printed) : 0;
  append_escaped(out, r.peer);
  out.append(" - - ").append(time, n).append(" \"");
  append_request_line(out, r);
  out.append("\" ").append(std::to_string(r.status));
  out.append(" ").append(std::to_string(r.body_bytes)).append(" \"");
  append_escaped(out, r.referer);
  out.append("\" \"");
  append_escaped(out, r.user_agent);
  out.append("\" ");
  append_seconds(out, r.request_time);
}

void format_json(std::string& out, const AccessRecord& r) {
  UtcTime u = utc(r.wall);
  char time[48];
  int printed =
      std::snprintf(time, sizeof time, "%04lld-%02u-%02uT%02u:%02u:%02u",
                    static_cast<long long>(u.year), u.month, u.day, u.hour, u.minute, u.second);
  std::size_t n = printed > 0 ? static_cast<std::size_t>(printed) : 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.wall).count() % 1000;
  n += static_cast<std::size_t>(
      std::snprintf(time + n, sizeof time - n, ".%03lldZ", static_cast<long long>(ms)));
  out.append("{\"time\":\"").append(time, n).append("\",\"remote_addr\":");
  append_json_string(out, r.peer);
  out.append(",\"request\":");
  if (r.method.empty()) {
    out.append("null,\"method\":null,\"uri\":null,\"protocol\":null");
  } else {
    std::string line;
    append_request_line(line, r);
    append_json_string(out, line);
    out.append(",\"method\":");
    append_json_string(out, r.method);
    out.append(",\"uri\":");
    append_json_string(out, r.target);
    out.append(r.version_minor == 0 ? ",\"protocol\":\"HTTP/1.0\"" : ",\"protocol\":\"HTTP/1.1\"");
  }
  out.append(",\"status\":").append(std::to_string(r.status));
  out.append(",\"body_bytes_sent\":").append(std::to_string(r.body_bytes));
  out.append(",\"bytes_sent\":").append(std::to_string(r.bytes_sent));
  out.append(",\"http_referer\":");
  append_json_string(out, r.referer);
  out.append(",\"http_user_agent\":");
  append_json_string(out, r.user_agent);
  out.append(",\"request_time\":");
  append_seconds(out, r.request_time);
  out.append(",\"upstream_addr\":");
  if (r.upstream.empty()) {
    out.append("null");
  } else {
    append_json_string(out, r.upstream);
  }
  out.append(",\"upstream_connect_time\":");
  append_json_seconds(out, r.upstream_connect);
  out.append(",\"upstream_header_time\":");
  append_json_seconds(out, r.upstream_header);
  out.append(",\"upstream_response_time\":");
  append_json_seconds(out, r.upstream_response);
  out.push_back('}');
}

}  // namespace

void format_access(std::string& out, const AccessRecord& r, AccessFormat format) {
  if (format == AccessFormat::kJson) {
    format_json(out, r);
  } else {
    format_combined(out, r);
  }
  out.push_back('\n');
}

}  // namespace gearbox::core
