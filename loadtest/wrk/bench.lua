-- One wrk script for every scenario: method, body size and the expected response body come
-- from the command line (`wrk ... -- METHOD BODY_BYTES EXPECT [DEPTH]`, EXPECT "=echo" for the
-- request's own body, or the literal body; DEPTH > 1 pipelines that many requests per send).
-- Every response is checked: a correct one is status 200 with exactly the expected body; done()
-- prints the figures, correct responses apart, as one JSON line for the runner.

local method, body_bytes, expect = "GET", 0, nil
local threads = {}

-- per thread (each wrk thread has its own Lua state; done() collects them with thread:get)
correct, bad_status, bad_body = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

-- A body that is not one repeated byte, so that a server that mixes up or drops bytes shows.
local function pattern(n)
  local unit = {}
  for i = 0, 250 do
    unit[#unit + 1] = string.char(33 + (i * 7) % 94)
  end
  local s = table.concat(unit)
  return string.rep(s, math.floor(n / #s) + 1):sub(1, n)
end

function init(args)
  method = args[1] or "GET"
  body_bytes = tonumber(args[2] or "0") or 0
  expect = args[3]
  wrk.method = method
  if body_bytes > 0 then
    wrk.body = pattern(body_bytes)
    wrk.headers["Content-Type"] = "application/octet-stream"
  end
  if expect == "=echo" then
    expect = wrk.body or ""
  end
  local depth = tonumber(args[4] or "1") or 1
  if depth > 1 then
    -- wrk counts the requests in what request() returns and expects as many responses.
    local batch = string.rep(wrk.format(), depth)
    request = function() return batch end
  end
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif expect ~= nil and body ~= expect then
    bad_body = bad_body + 1
  else
    correct = correct + 1
  end
end

function done(summary, latency, requests)
  local ok, st, bd = 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("correct") or 0)
    st = st + (t:get("bad_status") or 0)
    bd = bd + (t:get("bad_body") or 0)
  end
  local p = {}
  for _, q in ipairs({50, 75, 90, 99, 99.9, 99.99}) do
    p[#p + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  local e = summary.errors
  io.write(string.format(
    'GEARBOX_WRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"correct": %d, "bad_status": %d, "bad_body": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, %s}}\n',
    summary.duration, summary.requests, summary.bytes, ok, st, bd,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(p, ", ")))
end
