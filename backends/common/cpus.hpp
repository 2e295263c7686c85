// How many CPUs this process may run on, for backends that size their thread count by it.
#pragma once

namespace gearbox::backends {

// The CPUs in the process's affinity mask (taskset), else the machine's; at least 1.
int usable_cpus();

}  // namespace gearbox::backends
