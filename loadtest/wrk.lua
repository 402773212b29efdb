-- wrk script for `make bench`.
--   wrk ... -s loadtest/wrk.lua http://host:port/v1/models/NAME:predict -- BODIES
-- POSTs the request bodies in BODIES (one JSON body per line, held-out trips
-- written by loadtest/bench.py), round robin, each thread from its own
-- starting point. Without BODIES it GETs the URL (the ceilings).
-- At the end it prints one JSON line, {"wrk": {...}}, that bench.py reads.

local prepared = {}
local next_index = 0

function init(args)
  local file = args[1]
  if file == nil then
    return
  end
  local headers = { ["Content-Type"] = "application/json" }
  for line in io.lines(file) do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", wrk.path, headers, line)
    end
  end
  if #prepared == 0 then
    error("no request bodies in " .. file)
  end
  next_index = math.random(#prepared)
end

function request()
  if #prepared == 0 then
    return wrk.format()
  end
  next_index = next_index % #prepared + 1
  return prepared[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"wrk": {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
