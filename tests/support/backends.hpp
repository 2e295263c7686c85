// The one list of backend names the conformance suite runs over. Add a backend here once the
// binary accepts it for `--backend`; every conformance test then runs against it too.
#pragma once

#include <string>
#include <vector>

namespace gearbox::test {

inline const std::vector<std::string>& conformance_backends() {
  static const std::vector<std::string> kBackends = {"prefork", "thread", "pool", "uring", "fiber"};
  return kBackends;
}

}  // namespace gearbox::test
