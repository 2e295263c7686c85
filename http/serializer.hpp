// Writes HTTP/1.1 heads and chunk framing into caller-owned buffers (RFC 9112 §4, §7.1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gearbox::http {

// Appends "HTTP/1.1 <status> <reason>\r\n".
void append_status_line(std::string& out, int status);
// Appends "<method> <target> HTTP/1.1\r\n".
void append_request_line(std::string& out, std::string_view method, std::string_view target);
// Appends "<name>: <value>\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);
void append_field(std::string& out, std::string_view name, std::uint64_t value);
// Appends the blank line that ends a head.
void end_head(std::string& out);

// Chunk framing: the size line for a chunk of n bytes ("<hex>\r\n"), written into buf, which
// must hold kChunkHeaderMax bytes; returns the view of buf used.
inline constexpr std::size_t kChunkHeaderMax = 20;
std::string_view chunk_header(char* buf, std::size_t n);
inline constexpr std::string_view kCrlf = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// Whether a response with this status to this request may carry a body (RFC 9110 §6.4.1):
// never for HEAD, 1xx, 204, 304.
bool response_has_body(bool head_request, int status);

}  // namespace gearbox::http
