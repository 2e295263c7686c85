#!/usr/bin/env bash
# Dependencies point one way (DESIGN.md): backends -> server -> http. Fails listing every
# include that points the wrong way, and every use of a library outside its room.
set -u
cd "$(dirname "$0")/.."
bad=0
check() {  # check <description> <grep -E pattern> <files...>
  local what=$1 pattern=$2
  shift 2
  local hits
  hits=$(grep -nE "$pattern" "$@" 2>/dev/null)
  if [ -n "$hits" ]; then
    echo "layering: $what:"
    echo "$hits"
    bad=1
  fi
}
http_files=$(git ls-files 'http/*.cpp' 'http/*.hpp')
server_files=$(git ls-files 'server/*.cpp' 'server/*.hpp' | grep -v '^server/main.cpp$')
core_files=$(echo "$server_files" | grep -v -e "^server/config.cpp$")
# The log writer is the one place the core writes (stderr, one write(2) a line).
io_files=$(echo "$core_files" | grep -v -e "^server/log.cpp$")
check "http/ includes nothing of ours" '#include "(server|backends)/' $http_files
check "server/ never includes backends/ (main.cpp aside)" '#include "backends/' $server_files
check "llhttp only in http/parser.cpp" '#include [<"]llhttp' $(echo "$http_files $server_files" | tr ' ' '\n' | grep -v '^http/parser.cpp$')
check "cxxopts and toml++ only in config.cpp and main.cpp" '#include [<"](cxxopts|toml\+\+)' $core_files $http_files
check "liburing only under backends/uring/" '#include [<"]liburing' $(git ls-files 'backends/*' | grep -v '^backends/uring/') $http_files $server_files
check "Boost.Fiber only under backends/fiber/" '#include [<"]boost/fiber' $(git ls-files 'backends/*' | grep -v '^backends/fiber/') $http_files $server_files
check "the core makes no socket or clock calls" '(::socket|::connect|::accept|::read|::write|::poll|::close|Clock::now|steady_clock::now|std::thread|pthread_create)\(' $io_files
for dir in $(git ls-files 'backends/*/*' | cut -d/ -f2 | sort -u); do
  [ "$dir" = common ] && continue
  others=$(git ls-files 'backends/*/*' | cut -d/ -f2 | sort -u | grep -vx "$dir" | grep -vx common | paste -sd'|')
  [ -n "$others" ] && check "backends/$dir includes no other backend" "#include \"backends/($others)/" $(git ls-files "backends/$dir/*")
done
[ $bad -eq 0 ] && echo "layering: ok"
exit $bad
