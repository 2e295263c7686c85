// Routing: longest prefix, segment boundaries, prefix stripping, query kept, target forms
// (server/routing.cpp).
#include "server/routing.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace gearbox::core {
namespace {

std::vector<UpstreamGroup> groups(std::initializer_list<const char*> names) {
  std::vector<UpstreamGroup> out;
  for (const char* n : names) {
    UpstreamGroup g;
    g.name = n;
    out.push_back(g);
  }
  return out;
}

// The group name a target routes to, or "" for no route.
std::string routed_group(const Router& r, const std::vector<UpstreamGroup>& gs,
                         std::string_view target) {
  const RouteMatch* m = r.match(target);
  return m == nullptr ? "" : gs[m->group].name;
}

std::string upstream_target(const Router& r, std::string_view target) {
  const RouteMatch* m = r.match(target);
  if (m == nullptr) {
    return "<none>";
  }
  std::string out;
  Router::write_target(out, *m, target);
  return out;
}

TEST(Router, EmptyRoutesSendEverythingToFirstGroup) {
  auto gs = groups({"first", "second"});
  Router r({}, gs);
  EXPECT_EQ(routed_group(r, gs, "/"), "first");
  EXPECT_EQ(routed_group(r, gs, "/any/path?x=1"), "first");
  EXPECT_EQ(upstream_target(r, "/any/path?x=1"), "/any/path?x=1");
}

TEST(Router, LongestPrefixWins) {
  auto gs = groups({"root", "api", "apiv2"});
  Router r({{"/", "root", false}, {"/api/v2", "apiv2", false}, {"/api", "api", false}}, gs);
  EXPECT_EQ(routed_group(r, gs, "/api/v2/users"), "apiv2");
  EXPECT_EQ(routed_group(r, gs, "/api/v1/users"), "api");
  EXPECT_EQ(routed_group(r, gs, "/other"), "root");
}

TEST(Router, PrefixMatchesOnSegmentBoundaryOnly) {
  auto gs = groups({"api"});
  Router r({{"/api", "api", false}}, gs);
  EXPECT_EQ(routed_group(r, gs, "/api"), "api");
  EXPECT_EQ(routed_group(r, gs, "/api/x"), "api");
  EXPECT_EQ(routed_group(r, gs, "/api?q=1"), "api");
  EXPECT_EQ(routed_group(r, gs, "/apix"), "");
  EXPECT_EQ(routed_group(r, gs, "/ap"), "");
}

TEST(Router, TrailingSlashPrefixNeedsTheSlash) {
  auto gs = groups({"api"});
  Router r({{"/api/", "api", false}}, gs);
  EXPECT_EQ(routed_group(r, gs, "/api/x"), "api");
  EXPECT_EQ(routed_group(r, gs, "/api/"), "api");
  EXPECT_EQ(routed_group(r, gs, "/api"), "");
}

TEST(Router, NoMatchingPrefixIsNoRoute) {
  auto gs = groups({"api"});
  Router r({{"/api", "api", false}}, gs);
  EXPECT_EQ(r.match("/static/x"), nullptr);
  EXPECT_TRUE(Router::routable("/static/x"));
}

TEST(Router, EqualPrefixesFirstConfiguredWins) {
  auto gs = groups({"a", "b"});
  Router r({{"/x", "a", false}, {"/x", "b", false}}, gs);
  EXPECT_EQ(routed_group(r, gs, "/x/1"), "a");
}

TEST(Router, StripPrefixKeepsLeadingSlashAndQuery) {
  auto gs = groups({"api"});
  Router r({{"/api", "api", true}}, gs);
  EXPECT_EQ(upstream_target(r, "/api/users/7?sort=asc&x=%2F"), "/users/7?sort=asc&x=%2F");
  EXPECT_EQ(upstream_target(r, "/api"), "/");
  EXPECT_EQ(upstream_target(r, "/api?q=1"), "/?q=1");
  EXPECT_EQ(upstream_target(r, "/api/"), "/");
}

TEST(Router, StripPrefixWithTrailingSlash) {
  auto gs = groups({"api"});
  Router r({{"/api/", "api", true}}, gs);
  EXPECT_EQ(upstream_target(r, "/api/users"), "/users");
  EXPECT_EQ(upstream_target(r, "/api/?a=b"), "/?a=b");
}

TEST(Router, WithoutStripTargetIsUnchanged) {
  auto gs = groups({"api"});
  Router r({{"/api", "api", false}}, gs);
  EXPECT_EQ(upstream_target(r, "/api/users?sort=asc"), "/api/users?sort=asc");
}

TEST(Router, QueryDoesNotTakePartInMatching) {
  auto gs = groups({"root", "api"});
  Router r({{"/", "root", false}, {"/api", "api", false}}, gs);
  EXPECT_EQ(routed_group(r, gs, "/x?next=/api/y"), "root");
}

TEST(Router, AbsoluteFormIsMatchedByPathAndNeverPicksUpstream) {
  auto gs = groups({"root", "api"});
  Router r({{"/", "root", false}, {"/api", "api", true}}, gs);
  EXPECT_EQ(routed_group(r, gs, "http://evil.example/api/x?y=1"), "api");
  EXPECT_EQ(upstream_target(r, "http://evil.example/api/x?y=1"), "/x?y=1");
  EXPECT_EQ(upstream_target(r, "HTTPS://evil.example:8443/a"), "/a");
  EXPECT_EQ(upstream_target(r, "http://evil.example"), "/");
  EXPECT_EQ(upstream_target(r, "http://evil.example?q"), "/?q");
}

// A server-wide OPTIONS goes where "/" goes and stays server-wide (RFC 9110 §9.3.7), also when
// it came in absolute-form with an empty path.
TEST(Router, AsteriskFormIsRoutedAsTheRootAndSentAsAnAsterisk) {
  auto gs = groups({"api", "root"});
  Router r({{"/api", "api", true}, {"/", "root", true}}, gs);
  EXPECT_TRUE(Router::routable("*"));
  EXPECT_EQ(routed_group(r, gs, "*"), "root");
  EXPECT_EQ(upstream_target(r, "*"), "*");
  EXPECT_EQ(Router::authority("*"), "");
  const RouteMatch* m = r.match("http://h");
  ASSERT_NE(m, nullptr);
  std::string out;
  Router::write_target(out, *m, "http://h", true);
  EXPECT_EQ(out, "*");
  for (std::string_view t : {"http://h/", "http://h?q", "/"}) {
    out.clear();
    Router::write_target(out, *r.match(t), t, true);
    EXPECT_NE(out, "*") << t;
  }
  Router only_api({{"/api", "api", false}}, gs);
  EXPECT_EQ(only_api.match("*"), nullptr);  // nothing serves "/": 404
}

TEST(Router, AuthorityFormAndOthersAreNotRoutable) {
  auto gs = groups({"root"});
  Router r({}, gs);
  for (std::string_view t : {"example.com:443", "", "ftp://x/y", "http:///nohost", "api/x"}) {
    EXPECT_FALSE(Router::routable(t)) << t;
    EXPECT_EQ(r.match(t), nullptr) << t;
  }
}

TEST(Router, DotSegmentsCannotEscapeThePrefix) {
  auto gs = groups({"public", "admin"});
  Router r({{"/public", "public", true}, {"/admin", "admin", false}}, gs);
  for (std::string_view t :
       {"/public/../admin", "/public/%2e%2e/admin", "/public/.%2E/admin", "/public/./x",
        "/public/..", "/public/..%2fadmin", "/public/..\\admin", "http://h/public/../admin"}) {
    EXPECT_FALSE(Router::routable(t)) << t;
    EXPECT_EQ(r.match(t), nullptr) << t;
  }
  EXPECT_EQ(routed_group(r, gs, "/public/...x/a..b/.hidden"), "public");
}

TEST(Router, CheckReportsUnknownGroupAndBadPrefix) {
  auto gs = groups({"api"});
  EXPECT_EQ(Router::check({{"/api", "api", false}}, gs), "");
  EXPECT_NE(Router::check({{"/api", "nope", false}}, gs).find("nope"), std::string::npos);
  EXPECT_NE(Router::check({{"api", "api", false}}, gs).find("'/'"), std::string::npos);
  EXPECT_FALSE(Router::check({}, {}).empty());
  EXPECT_THROW(Router({{"/api", "nope", false}}, gs), std::invalid_argument);
}

}  // namespace
}  // namespace gearbox::core
