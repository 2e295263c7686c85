// Test-side HTTP clients for integration tests: a raw TCP socket to 127.0.0.1 with a minimal
// response reader (status, headers, Content-Length / chunked / close-delimited bodies), and a
// libcurl easy handle that reports how many connections it opened (keep-alive reuse checks).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gearbox::test {

using Millis = std::chrono::milliseconds;

// One parsed HTTP response as the client saw it. `error` is empty when the whole response was
// read; otherwise it says what went wrong (timeout, malformed, closed early) and the other
// fields hold what had been parsed so far.
struct HttpResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as received
  std::vector<std::pair<std::string, std::string>> trailers;
  std::string body;  // de-chunked
  bool chunked = false;
  bool close_delimited = false;  // no Content-Length, no chunked: body ran to EOF
  std::string raw_head;          // status line + fields + CRLF CRLF, as received
  std::string error;

  bool ok() const { return error.empty(); }
  // First field value with this name (case-insensitive), if any.
  std::optional<std::string> header(std::string_view name) const;
  // Number of fields with this name (case-insensitive).
  std::size_t header_count(std::string_view name) const;
  // True when a Connection field holds the token (case-insensitive, comma-separated).
  bool has_connection_token(std::string_view token) const;
};

// What happened while waiting for the server to close a connection.
struct CloseResult {
  bool closed = false;  // EOF or reset seen before the timeout
  bool reset = false;   // ECONNRESET rather than an orderly FIN
  std::string extra;    // bytes received while waiting (should normally be empty)
};

// A connected TCP socket to 127.0.0.1. Move-only; closes on destruction. Bytes received but not
// yet consumed by a read_response() are kept, so pipelined responses parse one at a time.
class Socket {
 public:
  // Connects to 127.0.0.1:port within `timeout`. On failure valid() is false and error() says why.
  // `rcvbuf` > 0 sets SO_RCVBUF before connecting (a client whose buffers fill quickly).
  static Socket connect(int port, Millis timeout = Millis{2000}, int rcvbuf = 0);

  Socket() = default;
  ~Socket();
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

  // Writes every byte (MSG_NOSIGNAL) within `timeout`. False on error (peer reset, EPIPE,
  // timeout); error() says which.
  bool send_all(std::string_view bytes, Millis timeout = Millis{5000});
  // Half-closes the write side (the server then sees EOF).
  void shutdown_write();
  // Closes now. With `reset`, sets SO_LINGER 0 so the peer gets a RST.
  void close(bool reset = false);

  // Reads one response. `head_request`: the request was HEAD (no body follows). 1xx interim
  // responses are returned as they are; call again for the final one. `timeout` bounds the
  // whole response.
  HttpResponse read_response(Millis timeout = Millis{5000}, bool head_request = false);
  // Reads raw bytes until at least `min_bytes` are buffered or the timeout; returns and consumes
  // everything buffered.
  std::string read_some(std::size_t min_bytes = 1, Millis timeout = Millis{5000});
  // Reads until EOF (or reset, or timeout); returns everything received (buffered bytes first).
  std::string read_until_eof(Millis timeout = Millis{5000}, bool* eof = nullptr);
  // Waits until the peer closes the connection; any bytes that arrive meanwhile go to `extra`.
  CloseResult wait_for_close(Millis timeout = Millis{3000});
  // True when bytes received but not yet consumed are waiting.
  bool has_buffered() const { return !buffer_.empty(); }

 private:
  explicit Socket(int fd) : fd_(fd) {}
  // Receives into buffer_ until `deadline`. Returns bytes read (0 = EOF, -1 = error/timeout).
  long fill(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string buffer_;
  std::string error_;
  bool eof_ = false;
  bool reset_ = false;
};

// Writes every byte to a (non-blocking) socket within `timeout`, MSG_NOSIGNAL. For a second
// thread that sends while the Socket's owner reads. False on error, with `error` set.
bool send_all_fd(int fd, std::string_view bytes, Millis timeout, std::string* error = nullptr);

// What a client that writes and never reads saw (send_until_cut).
struct StallResult {
  bool cut = false;      // the peer reset the connection (or closed both ways)
  Millis stalled_for{};  // from the last send that moved a byte to the end
  Millis total{};
  std::size_t sent = 0;
};

// Sends `chunk` over and over (a non-blocking socket; never reads) until the peer cuts the
// connection or `limit` passes: a client that stopped reading its answers (--send-timeout).
StallResult send_until_cut(int fd, std::string_view chunk, Millis limit);

// Connects, sends `request`, reads one response (convenience for single-shot cases).
HttpResponse exchange(int port, std::string_view request, Millis timeout = Millis{5000},
                      bool head_request = false);

// A libcurl easy handle, reused across requests so that libcurl keeps the connection alive.
// connects() is the sum of CURLINFO_NUM_CONNECTS over every request made with this client.
class CurlClient {
 public:
  struct Result {
    int curl_code = 0;  // CURLcode; 0 = CURLE_OK
    std::string error;  // curl's error text when curl_code != 0
    long status = 0;
    std::string body;
    std::string head;          // raw header lines of the final response
    long new_connections = 0;  // CURLINFO_NUM_CONNECTS of this request
    double seconds = 0;        // CURLINFO_TOTAL_TIME
  };

  CurlClient();
  ~CurlClient();
  CurlClient(const CurlClient&) = delete;
  CurlClient& operator=(const CurlClient&) = delete;

  // `method` "GET", "HEAD", "POST", ... ; `body` sent as-is when not empty (or when method is
  // POST/PUT); `headers` are full "Name: value" lines.
  Result request(const std::string& method, const std::string& url, const std::string& body = {},
                 const std::vector<std::string>& headers = {}, Millis timeout = Millis{10000});
  Result get(const std::string& url, Millis timeout = Millis{10000}) {
    return request("GET", url, {}, {}, timeout);
  }
  long connects() const { return connects_; }

 private:
  void* easy_ = nullptr;  // CURL*, kept opaque so tests need not include curl.h
  long connects_ = 0;
};

// "http://127.0.0.1:PORT" + path.
std::string local_url(int port, std::string_view path);

// Sends head + body from a second thread while this one reads the response: the server streams
// the echo back before the whole body is in, so one thread would deadlock on a big body.
HttpResponse post_and_read(Socket& s, const std::string& head, const std::string& body,
                           Millis timeout = Millis{20000});

// Every byte value, in an order that is not a simple repetition.
inline std::string binary_body(std::size_t size) {
  std::string out(size, '\0');
  std::uint32_t x = 2463534242u;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xff);
  }
  return out;
}

}  // namespace gearbox::test
