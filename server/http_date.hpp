// The Date field's value (RFC 9110 §6.6.1, IMF-fixdate) for a wall time given in seconds since
// the epoch. Formatted at most once a second per thread; the core passes the time in.
#pragma once

#include <cstdint>
#include <string_view>

namespace gearbox::core {

// "Sun, 06 Nov 1994 08:49:37 GMT". The view stays valid until this thread's next call with
// another second.
std::string_view http_date(std::int64_t unix_seconds);

}  // namespace gearbox::core
