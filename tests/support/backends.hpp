// The one list of backend names the conformance suite runs over. Add a backend here once the
// binary accepts it for `--backend`; every conformance test then runs against it too.
// GEARBOX_TEST_BACKENDS (names separated by commas or spaces) replaces the list for one run:
// `make test` runs the suites over the threaded backends against a ThreadSanitizer binary so
// (TSAN_BACKENDS in the Makefile).
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

namespace gearbox::test {

inline const std::vector<std::string>& conformance_backends() {
  static const std::vector<std::string> kBackends = [] {
    std::vector<std::string> names = {"prefork", "thread", "pool", "uring", "fiber"};
    const char* only = std::getenv("GEARBOX_TEST_BACKENDS");
    if (only != nullptr && *only != '\0') {
      names.clear();
      std::string name;
      for (const char* p = only;; ++p) {
        if (*p == ',' || *p == ' ' || *p == '\0') {
          if (!name.empty()) {
            names.push_back(name);
          }
          name.clear();
          if (*p == '\0') {
            break;
          }
        } else {
          name.push_back(*p);
        }
      }
    }
    return names;
  }();
  return kBackends;
}

}  // namespace gearbox::test
