// Errors found in untrusted input: a value carrying the HTTP status it must be answered with.
// Parsers return these; nothing in http/ throws on bad input.
#pragma once

#include <cstdint>
#include <string_view>

namespace gearbox::http {

enum class Error : std::uint8_t {
  kNone,
  kBadRequest,           // 400: malformed or ambiguous framing (RFC 9112 §6.3, §11.2)
  kRequestTimeout,       // 408: head not received in time
  kBodyTooLarge,         // 413: body over --max-body
  kUriTooLong,           // 414: request line over the head limit
  kHeaderTooLarge,       // 431: header section over --max-header or --max-headers
  kNotImplemented,       // 501: unknown Transfer-Encoding (RFC 9112 §6.1)
  kVersionNotSupported,  // 505: not HTTP/1.0 or HTTP/1.1
  kBadGateway,           // 502: malformed upstream response (response parser)
};

// The status code an error is answered with (0 for kNone).
constexpr int status_of(Error e) {
  switch (e) {
    case Error::kNone:
      return 0;
    case Error::kBadRequest:
      return 400;
    case Error::kRequestTimeout:
      return 408;
    case Error::kBodyTooLarge:
      return 413;
    case Error::kUriTooLong:
      return 414;
    case Error::kHeaderTooLarge:
      return 431;
    case Error::kNotImplemented:
      return 501;
    case Error::kVersionNotSupported:
      return 505;
    case Error::kBadGateway:
      return 502;
  }
  return 500;
}

// The reason phrase for a status code ("" for codes we never send).
std::string_view reason_phrase(int status);

}  // namespace gearbox::http
