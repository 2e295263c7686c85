-- One wrk script for every scenario: method and body size come from the command line
-- (`wrk ... -- METHOD BODY_BYTES`); done() prints the figures as one JSON line for the runner.

local method, body_bytes = "GET", 0

function init(args)
  method = args[1] or "GET"
  body_bytes = tonumber(args[2] or "0") or 0
  wrk.method = method
  if body_bytes > 0 then
    wrk.body = string.rep("x", body_bytes)
    wrk.headers["Content-Type"] = "application/octet-stream"
  end
end

function done(summary, latency, requests)
  local p = {}
  for _, q in ipairs({50, 75, 90, 99, 99.9, 99.99}) do
    p[#p + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  local e = summary.errors
  io.write(string.format(
    'GEARBOX_WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, %s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(p, ", ")))
end
