// Head and chunk-framing writers, and the response-body rule (RFC 9110 §6.4.1).
#include "http/serializer.hpp"

#include <gtest/gtest.h>

#include <string>

#include "http/error.hpp"

namespace gearbox::http {
namespace {

TEST(Serializer, StatusLineCarriesTheReasonPhrase) {
  std::string out;
  append_status_line(out, 200);
  append_status_line(out, 431);
  append_status_line(out, 599);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\nHTTP/1.1 431 Request Header Fields Too Large\r\nHTTP/1.1 599 \r\n");
}

TEST(Serializer, EveryErrorHasAReasonPhrase) {
  for (Error e : {Error::kBadRequest, Error::kRequestTimeout, Error::kBodyTooLarge,
                  Error::kUriTooLong, Error::kHeaderTooLarge, Error::kNotImplemented,
                  Error::kVersionNotSupported, Error::kBadGateway}) {
    EXPECT_FALSE(reason_phrase(status_of(e)).empty()) << status_of(e);
  }
  EXPECT_EQ(reason_phrase(504), "Gateway Timeout");
  EXPECT_EQ(reason_phrase(101), "Switching Protocols");
  EXPECT_EQ(reason_phrase(299), "");
}

TEST(Serializer, RequestLineFieldsAndEnd) {
  std::string out;
  append_request_line(out, "GET", "/a?b");
  append_field(out, "Host", "x");
  append_field(out, "Content-Length", std::uint64_t{18446744073709551615u});
  append_field(out, "Content-Length", std::uint64_t{0});
  end_head(out);
  EXPECT_EQ(out,
            "GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n"
            "Content-Length: 0\r\n\r\n");
}

TEST(Serializer, ChunkHeaderIsLowercaseHex) {
  char buf[kChunkHeaderMax];
  EXPECT_EQ(chunk_header(buf, 0), "0\r\n");
  EXPECT_EQ(chunk_header(buf, 10), "a\r\n");
  EXPECT_EQ(chunk_header(buf, 4096), "1000\r\n");
  EXPECT_EQ(chunk_header(buf, SIZE_MAX), std::string(sizeof(std::size_t) * 2, 'f') + "\r\n");
  EXPECT_EQ(kLastChunk, "0\r\n\r\n");
}

TEST(Serializer, ResponseHasBody) {
  EXPECT_TRUE(response_has_body(false, 200));
  EXPECT_TRUE(response_has_body(false, 404));
  EXPECT_TRUE(response_has_body(false, 205));
  EXPECT_FALSE(response_has_body(true, 200));
  EXPECT_FALSE(response_has_body(false, 100));
  EXPECT_FALSE(response_has_body(false, 101));
  EXPECT_FALSE(response_has_body(false, 204));
  EXPECT_FALSE(response_has_body(false, 304));
}

}  // namespace
}  // namespace gearbox::http
