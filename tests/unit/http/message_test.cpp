// Header storage, token lists, the hop-by-hop table and method names.
#include "http/message.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gearbox::http {
namespace {

TEST(Iequals, IgnoresAsciiCaseOnly) {
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(iequals("Content-Length", "Content-Lengt"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_FALSE(iequals("\xc9", "\xe9"));
  EXPECT_TRUE(iequals("", ""));
}

TEST(ForEachToken, TrimsAndSkipsEmptyElements) {
  std::vector<std::string> got;
  for_each_token(" a ,\tb,, ,c\t", [&](std::string_view t) { got.emplace_back(t); });
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
  got.clear();
  for_each_token("", [&](std::string_view t) { got.emplace_back(t); });
  EXPECT_TRUE(got.empty());
}

TEST(HasToken, MatchesWholeElementsOnly) {
  EXPECT_TRUE(has_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_FALSE(has_token("upgrades", "upgrade"));
  EXPECT_FALSE(has_token("closed", "close"));
  EXPECT_TRUE(has_token("close", "CLOSE"));
  EXPECT_FALSE(has_token("", "close"));
}

TEST(IsHopByHop, TheRfc9110Table) {
  for (const char* n :
       {"Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer", "transfer-encoding",
        "Upgrade", "Proxy-Authorization", "proxy-authenticate"}) {
    EXPECT_TRUE(is_hop_by_hop(n)) << n;
  }
  for (const char* n : {"Host", "Content-Length", "Trailers", "X-Connection", ""}) {
    EXPECT_FALSE(is_hop_by_hop(n)) << n;
  }
}

TEST(Headers, AddGetCountInOrder) {
  Headers h;
  h.add("Host", "a");
  h.add("X", "1");
  h.add("x", "2");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].name, "Host");
  EXPECT_EQ(h[2].value, "2");
  EXPECT_EQ(h.get("HOST"), "a");
  EXPECT_EQ(h.get("x"), "1");
  EXPECT_EQ(h.count("X"), 2u);
  EXPECT_EQ(h.get("missing"), std::nullopt);
  EXPECT_EQ(h.bytes(), std::string("HostaX1x2").size());
  std::string all;
  for (Field f : h) {
    all += std::string(f.name) + "=" + std::string(f.value) + ";";
  }
  EXPECT_EQ(all, "Host=a;X=1;x=2;");
}

TEST(Headers, BuiltInPieces) {
  Headers h;
  h.begin_field();
  h.append_name("Cont");
  h.append_name("ent-Type");
  h.append_value("text/");
  h.append_value("plain");
  h.begin_field();
  h.append_name("Empty");
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].name, "Content-Type");
  EXPECT_EQ(h[0].value, "text/plain");
  EXPECT_EQ(h[1].name, "Empty");
  EXPECT_EQ(h[1].value, "");
}

TEST(Headers, ClearKeepsCapacity) {
  Headers h;
  for (int i = 0; i < 50; ++i) {
    h.add("Name-" + std::to_string(i), std::string(40, 'v'));
  }
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.bytes(), 0u);
  h.add("A", "b");
  const char* before = h[0].name.data();
  for (int i = 0; i < 49; ++i) {
    h.add("Name-" + std::to_string(i), std::string(40, 'v'));
  }
  // No reallocation: the first view still points to the same storage.
  EXPECT_EQ(h[0].name.data(), before);
}

TEST(MethodFrom, KnownNamesAreCaseSensitive) {
  EXPECT_EQ(method_from("GET"), Method::kGet);
  EXPECT_EQ(method_from("HEAD"), Method::kHead);
  EXPECT_EQ(method_from("POST"), Method::kPost);
  EXPECT_EQ(method_from("PUT"), Method::kPut);
  EXPECT_EQ(method_from("DELETE"), Method::kDelete);
  EXPECT_EQ(method_from("CONNECT"), Method::kConnect);
  EXPECT_EQ(method_from("OPTIONS"), Method::kOptions);
  EXPECT_EQ(method_from("TRACE"), Method::kTrace);
  EXPECT_EQ(method_from("PATCH"), Method::kPatch);
  EXPECT_EQ(method_from("get"), Method::kOther);
  EXPECT_EQ(method_from("PROPFIND"), Method::kOther);
}

TEST(IsIdempotent, Rfc9110Section922) {
  EXPECT_TRUE(is_idempotent(Method::kGet));
  EXPECT_TRUE(is_idempotent(Method::kHead));
  EXPECT_TRUE(is_idempotent(Method::kPut));
  EXPECT_TRUE(is_idempotent(Method::kDelete));
  EXPECT_TRUE(is_idempotent(Method::kOptions));
  EXPECT_TRUE(is_idempotent(Method::kTrace));
  EXPECT_FALSE(is_idempotent(Method::kPost));
  EXPECT_FALSE(is_idempotent(Method::kPatch));
  EXPECT_FALSE(is_idempotent(Method::kConnect));
  EXPECT_FALSE(is_idempotent(Method::kOther));
}

TEST(RequestHead, ClearResetsEverything) {
  RequestHead h;
  h.method = "POST";
  h.method_kind = Method::kPost;
  h.target = "/x";
  h.version_minor = 0;
  h.headers.add("A", "b");
  h.framing = Framing::kChunked;
  h.content_length = 3;
  h.keep_alive = false;
  h.expect_continue = true;
  h.upgrade = true;
  h.clear();
  EXPECT_TRUE(h.method.empty());
  EXPECT_EQ(h.method_kind, Method::kOther);
  EXPECT_TRUE(h.target.empty());
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_TRUE(h.headers.empty());
  EXPECT_EQ(h.framing, Framing::kNone);
  EXPECT_EQ(h.content_length, 0u);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.expect_continue);
  EXPECT_FALSE(h.upgrade);
}

TEST(ResponseHead, ClearResetsEverything) {
  ResponseHead h;
  h.status = 404;
  h.reason = "Not Found";
  h.version_minor = 0;
  h.headers.add("A", "b");
  h.framing = Framing::kUntilClose;
  h.content_length = 3;
  h.keep_alive = false;
  h.clear();
  EXPECT_EQ(h.status, 0);
  EXPECT_TRUE(h.reason.empty());
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_TRUE(h.headers.empty());
  EXPECT_EQ(h.framing, Framing::kNone);
  EXPECT_EQ(h.content_length, 0u);
  EXPECT_TRUE(h.keep_alive);
}

}  // namespace
}  // namespace gearbox::http
