# Load-test runner library: the matrix, /proc sampling, wrk, servers, report and charts.
