// Longest-prefix routing on path segments, request-target forms (RFC 9112 §3.2) and the
// target rewrite for prefix stripping.
#include "server/routing.hpp"

#include <algorithm>
#include <stdexcept>

#include "http/message.hpp"

namespace gearbox::core {
namespace {

struct SplitTarget {
  std::string_view authority;  // absolute-form only
  std::string_view path;       // begins with '/'
  std::string_view query;      // "" or begins with '?'
  bool no_path = false;        // absolute-form with an empty path: `path` is "/"
};

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && http::iequals(s.substr(0, prefix.size()), prefix);
}

// Splits origin-form and http(s) absolute-form targets, and the asterisk-form (a server-wide
// OPTIONS: the parser refuses "*" with any other method), which is routed as "/" is; false for
// every other form.
bool split(std::string_view target, SplitTarget* out) {
  std::string_view rest;
  if (target == "*") {
    out->path = "/";
    return true;
  }
  if (!target.empty() && target.front() == '/') {
    rest = target;
  } else {
    std::size_t scheme = 0;
    if (starts_with_nocase(target, "http://")) {
      scheme = 7;
    } else if (starts_with_nocase(target, "https://")) {
      scheme = 8;
    } else {
      return false;
    }
    std::string_view after = target.substr(scheme);
    std::size_t end = after.find_first_of("/?");
    out->authority = after.substr(0, end);
    if (out->authority.empty() || out->authority.find('@') != std::string_view::npos) {
      return false;  // no authority, or userinfo (RFC 9110 §4.2.4: treated as an error)
    }
    rest = end == std::string_view::npos ? std::string_view() : after.substr(end);
  }
  std::size_t q = rest.find('?');
  out->path = rest.substr(0, q);
  out->query = q == std::string_view::npos ? std::string_view() : rest.substr(q);
  if (out->path.empty()) {
    out->path = "/";  // RFC 9112 §3.2.1: an empty path is sent as "/"
    out->no_path = true;
  }
  return true;
}

// "." or ".." spelled directly or with %2e (RFC 3986 §2.3: %2E is equivalent to ".").
bool is_dot_segment(std::string_view seg) {
  int dots = 0;
  std::size_t i = 0;
  while (i < seg.size()) {
    if (seg[i] == '.') {
      ++i;
    } else if (seg.size() - i >= 3 && seg[i] == '%' && seg[i + 1] == '2' &&
               (seg[i + 2] == 'e' || seg[i + 2] == 'E')) {
      i += 3;
    } else {
      return false;
    }
    if (++dots > 2) {
      return false;
    }
  }
  return dots > 0;
}

// Segments are split at '/', and also at "%2F" and backslash, which some upstreams decode or treat
// as '/' before resolving dot segments.
bool has_dot_segment(std::string_view path) {
  std::size_t start = 0;
  std::size_t i = 0;
  while (i <= path.size()) {
    std::size_t sep = 0;
    if (i == path.size() || path[i] == '/' || path[i] == '\\') {
      sep = 1;
    } else if (path.size() - i >= 3 && path[i] == '%' && path[i + 1] == '2' &&
               (path[i + 2] == 'f' || path[i + 2] == 'F')) {
      sep = 3;
    }
    if (sep == 0) {
      ++i;
      continue;
    }
    if (is_dot_segment(path.substr(start, i - start))) {
      return true;
    }
    i += sep;
    start = i;
  }
  return false;
}

bool prefix_matches(std::string_view prefix, std::string_view path) {
  if (path.size() < prefix.size() || path.substr(0, prefix.size()) != prefix) {
    return false;
  }
  return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
}

}  // namespace

std::string Router::check(const std::vector<Route>& routes,
                          const std::vector<UpstreamGroup>& groups) {
  if (groups.empty()) {
    return "proxy mode needs at least one upstream group";
  }
  for (const Route& r : routes) {
    if (r.prefix.empty() || r.prefix.front() != '/') {
      return "route prefix '" + r.prefix + "' must start with '/'";
    }
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const UpstreamGroup& g) { return g.name == r.group; });
    if (it == groups.end()) {
      return "route '" + r.prefix + "' names unknown upstream group '" + r.group + "'";
    }
  }
  return {};
}

Router::Router(const std::vector<Route>& routes, const std::vector<UpstreamGroup>& groups) {
  if (std::string error = check(routes, groups); !error.empty()) {
    throw std::invalid_argument(error);
  }
  if (routes.empty()) {
    routes_.push_back(RouteMatch{"/", 0, false});
    return;
  }
  for (const Route& r : routes) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const UpstreamGroup& g) { return g.name == r.group; });
    routes_.push_back(
        RouteMatch{r.prefix, static_cast<std::size_t>(it - groups.begin()), r.strip_prefix});
  }
  // Stable: of two equal prefixes, the first configured wins.
  std::stable_sort(routes_.begin(), routes_.end(), [](const RouteMatch& a, const RouteMatch& b) {
    return a.prefix.size() > b.prefix.size();
  });
}

bool Router::routable(std::string_view target) {
  SplitTarget t;
  return split(target, &t) && !has_dot_segment(t.path);
}

const RouteMatch* Router::match(std::string_view target) const {
  SplitTarget t;
  if (!split(target, &t) || has_dot_segment(t.path)) {
    return nullptr;
  }
  for (const RouteMatch& r : routes_) {
    if (prefix_matches(r.prefix, t.path)) {
      return &r;
    }
  }
  return nullptr;
}

std::string_view Router::authority(std::string_view target) {
  SplitTarget t;
  return split(target, &t) ? t.authority : std::string_view();
}

void Router::write_target(std::string& out, const RouteMatch& route, std::string_view target,
                          bool options) {
  SplitTarget t;
  if (!split(target, &t)) {
    out.push_back('/');
    return;
  }
  // RFC 9110 §9.3.7: a server-wide OPTIONS stays one, and an absolute-form OPTIONS with an empty
  // path and no query is sent in asterisk-form.
  if (target == "*" || (options && t.no_path && t.query.empty())) {
    out.push_back('*');
    return;
  }
  std::string_view path = t.path;
  if (route.strip_prefix && prefix_matches(route.prefix, path)) {
    path.remove_prefix(route.prefix.size());
  }
  if (path.empty() || path.front() != '/') {
    out.push_back('/');
  }
  out.append(path);
  out.append(t.query);
}

}  // namespace gearbox::core
