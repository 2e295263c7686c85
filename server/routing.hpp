// Path-prefix routing of proxied requests to upstream groups: nginx's
// `location <prefix> { proxy_pass http://<group>; }`, longest prefix first. Pure: no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "server/config.hpp"

namespace gearbox::core {

// One configured route, resolved to a group index.
struct RouteMatch {
  std::string prefix;     // starts with '/'
  std::size_t group = 0;  // index into Config::groups
  bool strip_prefix = false;
};

// Built once per worker from the validated configuration, then read-only (safe to share
// between threads).
class Router {
 public:
  // Empty `routes` sends everything to groups[0]. Throws std::invalid_argument (start-up only)
  // when check() finds a problem.
  Router(const std::vector<Route>& routes, const std::vector<UpstreamGroup>& groups);

  // Empty when the routes are usable; otherwise one line saying why (for config validation):
  // no groups, a prefix not starting with '/', or a route naming an unknown group.
  static std::string check(const std::vector<Route>& routes,
                           const std::vector<UpstreamGroup>& groups);

  // Whether a request-target can be routed at all (RFC 9112 §3.2): origin-form, or
  // absolute-form with an http/https scheme (matched by its path only: the authority never
  // selects an upstream, so this is not an open proxy), and no "." / ".." path segment (also
  // percent-encoded), which an upstream could resolve to step outside the routed prefix.
  // An authority with userinfo ("user@host") is refused too (RFC 9110 §4.2.4).
  // The asterisk-form ("*", which the parser allows for OPTIONS only) is routed as "/" is, and
  // sent on as "*" (HAProxy; nginx answers 400). Authority-form and anything else are not: the
  // core answers 400.
  static bool routable(std::string_view target);

  // The route for a target: the longest configured prefix that matches on a segment boundary
  // ("/api" matches "/api", "/api/x", "/api?q", not "/apix"; "/api/" matches "/api/x" only).
  // nullptr when !routable(target) (answer 400) or no prefix matches (answer 404). The pointer
  // lives as long as the Router.
  const RouteMatch* match(std::string_view target) const;

  // Appends the origin-form target to send upstream for a target that matched `route`: the
  // path (the prefix removed when route.strip_prefix, always keeping a leading '/') and then
  // the query unchanged. Absolute-form targets are reduced to their path and query.
  // `options` (an OPTIONS request): an absolute-form target with an empty path and no query is
  // sent as "*" (RFC 9110 §9.3.7); "*" itself always is.
  static void write_target(std::string& out, const RouteMatch& route, std::string_view target,
                           bool options = false);

  // The authority ("host[:port]") of a routable absolute-form target, which a proxy sends as
  // Host in place of the received Host field (RFC 9112 §3.2.2); empty for origin-form.
  static std::string_view authority(std::string_view target);

  const std::vector<RouteMatch>& routes() const { return routes_; }

 private:
  std::vector<RouteMatch> routes_;  // longest prefix first
};

}  // namespace gearbox::core
