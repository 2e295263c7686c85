// Echo mode's routing of a request head to one of its endpoints.
#include "server/echo.hpp"

#include <charconv>

namespace gearbox::core {
namespace {

std::string_view path_of(std::string_view target) {
  std::size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

// "/delay/<ms>" -> ms; false when the rest is not a decimal number within `max`.
bool parse_ms(std::string_view rest, std::uint32_t max, std::uint32_t* out) {
  if (rest.empty() || rest.size() > 9) {
    return false;
  }
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
  if (ec != std::errc() || p != rest.data() + rest.size() || v > max) {
    return false;
  }
  *out = v;
  return true;
}

}  // namespace

EchoPlan plan_echo(const http::RequestHead& head) {
  EchoPlan plan;
  if (head.framing != http::Framing::kNone) {
    plan.kind = EchoPlan::Kind::kEchoBody;
    return plan;
  }
  if (head.method_kind != http::Method::kGet && head.method_kind != http::Method::kHead) {
    return plan;
  }
  std::string_view path = path_of(head.target);
  constexpr std::string_view kDelay = "/delay/";
  constexpr std::string_view kCpu = "/cpu/";
  if (path == "/plaintext") {
    plan.kind = EchoPlan::Kind::kPlaintext;
  } else if (path == "/health") {
    plan.kind = EchoPlan::Kind::kHealth;
  } else if (path.starts_with(kDelay)) {
    plan.kind = parse_ms(path.substr(kDelay.size()), kMaxDelayMs, &plan.ms)
                    ? EchoPlan::Kind::kDelay
                    : EchoPlan::Kind::kBadRequest;
  } else if (path.starts_with(kCpu)) {
    plan.kind = parse_ms(path.substr(kCpu.size()), kMaxCpuMs, &plan.ms)
                    ? EchoPlan::Kind::kCpu
                    : EchoPlan::Kind::kBadRequest;
  }
  return plan;
}

}  // namespace gearbox::core
