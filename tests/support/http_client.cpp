// Raw-socket and libcurl clients for the integration tests (see http_client.hpp).
#include "tests/support/http_client.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>

namespace gearbox::test {

namespace {

using Clock = std::chrono::steady_clock;

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

std::string printable(std::string_view s, std::size_t max = 200) {
  std::string out;
  for (char c : s.substr(0, max)) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      out += '.';
    } else {
      out += c;
    }
  }
  if (s.size() > max) {
    out += "...";
  }
  return out;
}

// Parses "Name: value" lines (CRLF-separated, no final empty line) into `out`.
bool parse_fields(std::string_view block, std::vector<std::pair<std::string, std::string>>& out) {
  while (!block.empty()) {
    auto eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view{} : block.substr(eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return false;
    }
    out.emplace_back(std::string(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
  }
  return true;
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) {
      return v;
    }
  }
  return std::nullopt;
}

std::size_t HttpResponse::header_count(std::string_view name) const {
  return std::count_if(headers.begin(), headers.end(),
                       [&](const auto& field) { return iequals(field.first, name); });
}

bool HttpResponse::has_connection_token(std::string_view token) const {
  for (const auto& [n, v] : headers) {
    if (!iequals(n, "Connection")) {
      continue;
    }
    std::string_view rest = v;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      if (iequals(trim(rest.substr(0, comma)), token)) {
        return true;
      }
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  return false;
}

Socket Socket::connect(int port, Millis timeout, int rcvbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    Socket s;
    s.error_ = std::string("socket: ") + std::strerror(errno);
    return s;
  }
  Socket s(fd);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (rcvbuf > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      Socket failed;
      failed.error_ = std::string("connect: ") + std::strerror(errno);
      return failed;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (r <= 0 || err != 0) {
      Socket failed;
      failed.error_ = r <= 0 ? "connect: timed out" : std::string("connect: ") + std::strerror(err);
      return failed;
    }
  }
  return s;
}

Socket::~Socket() {
  close();
}

Socket::Socket(Socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      buffer_(std::move(other.buffer_)),
      error_(std::move(other.error_)),
      eof_(other.eof_),
      reset_(other.reset_) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    buffer_ = std::move(other.buffer_);
    error_ = std::move(other.error_);
    eof_ = other.eof_;
    reset_ = other.reset_;
  }
  return *this;
}

void Socket::close(bool reset) {
  if (fd_ < 0) {
    return;
  }
  if (reset) {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  ::close(fd_);
  fd_ = -1;
}

bool send_all_fd(int fd, std::string_view bytes, Millis timeout, std::string* error) {
  auto deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) {
        if (error != nullptr) {
          *error = "send: timed out with " + std::to_string(bytes.size()) + " bytes unsent";
        }
        return false;
      }
      continue;
    }
    if (error != nullptr) {
      *error = std::string("send: ") + std::strerror(errno);
    }
    return false;
  }
  return true;
}

StallResult send_until_cut(int fd, std::string_view chunk, Millis limit) {
  StallResult out;
  const auto start = Clock::now();
  auto last_progress = start;
  std::size_t offset = 0;  // into `chunk`: the byte stream stays whole across partial sends
  while (Clock::now() - start < limit) {
    ssize_t n = ::send(fd, chunk.data() + offset, chunk.size() - offset, MSG_NOSIGNAL);
    if (n > 0) {
      out.sent += static_cast<std::size_t>(n);
      offset = (offset + static_cast<std::size_t>(n)) % chunk.size();
      last_progress = Clock::now();
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    bool cut = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
    if (!cut) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 20);
      cut = (p.revents & (POLLERR | POLLHUP)) != 0;
    }
    if (cut) {
      out.cut = true;
      break;
    }
  }
  const auto end = Clock::now();
  out.stalled_for = std::chrono::duration_cast<Millis>(end - last_progress);
  out.total = std::chrono::duration_cast<Millis>(end - start);
  return out;
}

bool Socket::send_all(std::string_view bytes, Millis timeout) {
  return send_all_fd(fd_, bytes, timeout, &error_);
}

void Socket::shutdown_write() {
  if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_WR);
  }
}

long Socket::fill(Clock::time_point deadline) {
  if (eof_) {
    return 0;
  }
  char chunk[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return n;
    }
    if (n == 0) {
      eof_ = true;
      return 0;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, remaining_ms(deadline));
      if (r <= 0) {
        return -1;
      }
      continue;
    }
    if (errno == ECONNRESET) {
      reset_ = true;
      eof_ = true;
      return 0;
    }
    error_ = std::string("recv: ") + std::strerror(errno);
    return -1;
  }
}

std::string Socket::read_some(std::size_t min_bytes, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (buffer_.size() < min_bytes && fill(deadline) > 0) {
  }
  return std::exchange(buffer_, {});
}

std::string Socket::read_until_eof(Millis timeout, bool* eof) {
  auto deadline = Clock::now() + timeout;
  while (fill(deadline) > 0) {
  }
  if (eof != nullptr) {
    *eof = eof_;
  }
  return std::exchange(buffer_, {});
}

CloseResult Socket::wait_for_close(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (fill(deadline) > 0) {
  }
  CloseResult result;
  result.closed = eof_;
  result.reset = reset_;
  result.extra = std::exchange(buffer_, {});
  return result;
}

HttpResponse Socket::read_response(Millis timeout, bool head_request) {
  auto deadline = Clock::now() + timeout;
  HttpResponse r;
  std::size_t pos = 0;
  // Ensures at least `n` bytes are buffered after `pos`; false on EOF or timeout.
  auto need = [&](std::size_t n) {
    while (buffer_.size() < pos + n) {
      if (fill(deadline) <= 0) {
        return false;
      }
    }
    return true;
  };
  auto fail = [&](std::string why) {
    r.error = std::move(why);
    if (eof_) {
      r.error += reset_ ? " (connection reset)" : " (connection closed)";
    } else if (Clock::now() >= deadline) {
      r.error += " (timed out)";
    }
    r.error += "; received: \"" + printable(buffer_) + "\"";
    return r;
  };

  std::size_t head_end;
  for (;;) {
    if (buffer_.size() >= 5 && buffer_.compare(0, 5, "HTTP/") != 0) {
      return fail("not an HTTP response (no status line)");
    }
    head_end = buffer_.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      break;
    }
    if (fill(deadline) <= 0) {
      return fail(buffer_.empty() ? "no response" : "incomplete response head");
    }
  }
  r.raw_head = buffer_.substr(0, head_end + 4);
  pos = head_end + 4;

  std::string_view head(r.raw_head);
  auto line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  auto sp1 = status_line.find(' ');
  if (sp1 == std::string_view::npos || status_line.size() < sp1 + 4) {
    return fail("malformed status line");
  }
  r.version = std::string(status_line.substr(0, sp1));
  std::string_view code = status_line.substr(sp1 + 1, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fail("malformed status code");
  }
  r.status = std::stoi(std::string(code));
  if (status_line.size() > sp1 + 5) {
    r.reason = std::string(status_line.substr(sp1 + 5));
  }
  std::size_t fields_begin = line_end + 2;
  std::size_t fields_end = head.size() - 4;  // excludes the final CRLF CRLF
  if (fields_begin < fields_end &&
      !parse_fields(head.substr(fields_begin, fields_end - fields_begin), r.headers)) {
    return fail("malformed header field");
  }

  bool no_body =
      head_request || (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304;
  auto te = r.header("Transfer-Encoding");
  auto cl = r.header("Content-Length");
  if (no_body) {
    // Nothing to read.
  } else if (te.has_value()) {
    if (!iequals(trim(*te), "chunked")) {
      return fail("unsupported Transfer-Encoding in response: " + *te);
    }
    r.chunked = true;
    for (;;) {
      std::size_t eol;
      while ((eol = buffer_.find("\r\n", pos)) == std::string::npos) {
        if (fill(deadline) <= 0) {
          return fail("incomplete chunk size line");
        }
      }
      std::string size_text = buffer_.substr(pos, eol - pos);
      size_text = size_text.substr(0, size_text.find(';'));
      std::size_t size = 0;
      try {
        std::size_t used = 0;
        size = std::stoull(size_text, &used, 16);
        if (used != size_text.size()) {
          return fail("bad chunk size: " + size_text);
        }
      } catch (const std::exception&) {
        return fail("bad chunk size: " + size_text);
      }
      pos = eol + 2;
      if (size == 0) {
        std::size_t end;
        while (true) {
          if (buffer_.compare(pos, 2, "\r\n") == 0) {
            end = pos;
            break;
          }
          end = buffer_.find("\r\n\r\n", pos);
          if (end != std::string::npos) {
            if (!parse_fields(std::string_view(buffer_).substr(pos, end - pos), r.trailers)) {
              return fail("malformed trailer");
            }
            end += 2;
            break;
          }
          if (fill(deadline) <= 0) {
            return fail("incomplete last chunk");
          }
        }
        pos = end + 2;
        break;
      }
      if (!need(size + 2)) {
        return fail("incomplete chunk");
      }
      r.body.append(buffer_, pos, size);
      if (buffer_.compare(pos + size, 2, "\r\n") != 0) {
        return fail("chunk not followed by CRLF");
      }
      pos += size + 2;
    }
  } else if (cl.has_value()) {
    std::size_t length = 0;
    try {
      length = std::stoull(*cl);
    } catch (const std::exception&) {
      return fail("bad Content-Length: " + *cl);
    }
    if (!need(length)) {
      return fail("incomplete body (" + std::to_string(buffer_.size() - pos) + " of " +
                  std::to_string(length) + " bytes)");
    }
    r.body = buffer_.substr(pos, length);
    pos += length;
  } else {
    r.close_delimited = true;
    while (fill(deadline) > 0) {
    }
    if (!eof_) {
      return fail("close-delimited body not ended by close");
    }
    r.body = buffer_.substr(pos);
    pos = buffer_.size();
  }
  buffer_.erase(0, pos);
  return r;
}

HttpResponse exchange(int port, std::string_view request, Millis timeout, bool head_request) {
  Socket s = Socket::connect(port, timeout);
  HttpResponse r;
  if (!s.valid()) {
    r.error = s.error();
    return r;
  }
  if (!s.send_all(request, timeout)) {
    r.error = s.error();
    return r;
  }
  return s.read_response(timeout, head_request);
}

namespace {

std::size_t append_to_string(char* data, std::size_t size, std::size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

}  // namespace

CurlClient::CurlClient() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  easy_ = curl_easy_init();
}

CurlClient::~CurlClient() {
  curl_easy_cleanup(static_cast<CURL*>(easy_));
}

CurlClient::Result CurlClient::request(const std::string& method, const std::string& url,
                                       const std::string& body,
                                       const std::vector<std::string>& headers, Millis timeout) {
  CURL* easy = static_cast<CURL*>(easy_);
  Result result;
  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_slist* list = nullptr;
  for (const auto& h : headers) {
    list = curl_slist_append(list, h.c_str());
  }
  // Settings are reset per request but the connection cache stays with the handle.
  curl_easy_reset(easy);
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, append_to_string);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &result.head);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
  if (method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (method != "GET" || !body.empty()) {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  CURLcode code = curl_easy_perform(easy);
  result.curl_code = static_cast<int>(code);
  if (code != CURLE_OK) {
    result.error = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
  }
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &result.status);
  curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &result.new_connections);
  curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &result.seconds);
  connects_ += result.new_connections;
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(list);
  // The header callback collects the head of every response (1xx too); keep the last one.
  auto last = result.head.rfind("\r\n\r\nHTTP/");
  if (last != std::string::npos && last + 4 < result.head.size()) {
    result.head.erase(0, last + 4);
  }
  return result;
}

std::string local_url(int port, std::string_view path) {
  return "http://127.0.0.1:" + std::to_string(port) + std::string(path);
}

HttpResponse post_and_read(Socket& s, const std::string& head, const std::string& body,
                           Millis timeout) {
  std::string send_error;
  bool sent = false;
  std::thread sender([&] {
    sent = send_all_fd(s.fd(), head, timeout, &send_error) &&
           send_all_fd(s.fd(), body, timeout, &send_error);
  });
  HttpResponse r = s.read_response(timeout);
  sender.join();
  EXPECT_TRUE(sent) << send_error;
  return r;
}

}  // namespace gearbox::test
