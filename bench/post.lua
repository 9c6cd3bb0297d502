-- wrk script for bench/run. $BODY_FILE holds one JSON request body per line:
-- every request POSTs the next one, each thread starting at its own offset so
-- that concurrent requests mostly differ (a single line: all are identical,
-- sent the cheap static way). Prints one summary line when the run ends.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"

local bodies = {}
for line in io.lines(os.getenv("BODY_FILE")) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
assert(#bodies > 0, "no request body in " .. tostring(os.getenv("BODY_FILE")))
wrk.body = bodies[1]

-- main state: spread the threads' starting points over the variants
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

if #bodies > 1 then
  local requests, i
  function init(args)
    requests = {}
    for n, body in ipairs(bodies) do
      requests[n] = wrk.format(nil, nil, nil, body)
    end
    -- offset is set by setup() before init runs in this thread
    i = math.floor((offset or 0) * #requests / 2)
  end
  function request()
    i = i % #requests + 1
    return requests[i]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d "
      .. "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
