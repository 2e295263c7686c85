// usable_cpus(): sched_getaffinity, falling back to std::thread::hardware_concurrency.
#include "backends/common/cpus.hpp"

#include <sched.h>

#include <algorithm>
#include <thread>

namespace gearbox::backends {

int usable_cpus() {
  cpu_set_t set;
  int cpus = 0;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    cpus = CPU_COUNT(&set);
  }
  if (cpus <= 0) {
    cpus = static_cast<int>(std::thread::hardware_concurrency());
  }
  return std::max(1, cpus);
}

}  // namespace gearbox::backends
