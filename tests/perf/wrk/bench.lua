-- wrk script for tests/perf/bench.py. Every row goes through request() (so the load generator does the same work
-- per request in every row); the credential header cycles through the lines of a file, one line per request.
--
--   wrk -t1 -c16 -d10s -s bench.lua -H 'Host: ...' URL -- TOKEN_FILE HEADER_NAME THREADS
--
-- TOKEN_FILE "-" sends no credential header. After the run, done() prints one line for the harness:
--   BENCH-RESULT {"requests": ..., "p50_us": ..., "p99_us": ..., ...}   (latencies from wrk's own histogram)

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local tokens = {}
local index = 0
local header = nil
local path = nil

function init(args)
  path = wrk.path
  local file = args[1] or "-"
  header = args[2] or "ServiceBusAuthorization"
  local threads = tonumber(args[3] or "1")
  if file ~= "-" then
    for line in io.lines(file) do
      if #line > 0 then tokens[#tokens + 1] = line end
    end
    -- each thread starts at its own offset, so threads do not send the same token at the same time
    index = math.floor((id or 0) * #tokens / threads)
  end
end

function request()
  if #tokens > 0 then
    index = index % #tokens + 1
    wrk.headers[header] = tokens[index]
  end
  return wrk.format(nil, path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %.0f, "duration_us": %.0f, "p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, ' ..
    '"max_us": %.0f, "connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
