-- wrk script for bench/: POST ingest bodies on keep-alive connections and
-- print one JSON line of totals and latency percentiles when done.
--
--   wrk -s ingest.lua URL -- file BODY_FILE CONTENT_TYPE
--       the same body on every request
--   wrk -s ingest.lua URL -- batch json|line SAMPLES CALLS BASE_US
--       a fresh body per request: SAMPLES samples over CALLS calls, kinds
--       audio/video alternating, timestamps BASE_US + a per-thread counter in
--       microseconds so that no two points of one series share a time and
--       InfluxDB keeps every one of them (counted afterwards).
--
-- With RTCSCOPE_WRK_STATUSES set, answers are counted by status (wrk then
-- parses every response's headers, so it is off where wrk's speed matters).

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

statuses = {}
if os.getenv("RTCSCOPE_WRK_STATUSES") then
  function response(status)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

local mode, format, samples, calls, base_us, fixed_request
local counter = 0

function init(args)
  mode = args[1]
  wrk.method = "POST"
  if mode == "file" then
    local file = assert(io.open(args[2], "rb"))
    wrk.body = file:read("*a")
    file:close()
    wrk.headers["Content-Type"] = args[3] or "application/json"
    fixed_request = wrk.format()
  else
    format = args[2]
    samples = tonumber(args[3])
    calls = tonumber(args[4])
    base_us = tonumber(args[5])
    wrk.headers["Content-Type"] = format == "json" and "application/json" or "text/plain"
  end
end

local function fields(kind, n)
  local rtt, jitter, lost = 30 + n % 17, 1 + (n % 7) / 2, n % 5
  local sent = 1000 + n
  if kind == "audio" then
    return {{"rtt", rtt}, {"jitter", jitter}, {"packetsLost", lost}, {"packetsSent", sent},
            {"bytesSent", sent * 160}, {"inputLevel", (n % 10) / 10}}
  end
  return {{"rtt", rtt}, {"jitter", jitter}, {"packetsLost", lost}, {"packetsSent", sent},
          {"bytesSent", sent * 1100}, {"framesPerSecond", 30}, {"frameWidth", 1280}, {"frameHeight", 720}}
end

local function joined(values, pattern)
  local out = {}
  for i, pair in ipairs(values) do
    out[i] = string.format(pattern, pair[1], pair[2])
  end
  return table.concat(out, ",")
end

local function json_sample(call, kind, ts_us, values)
  return string.format('{"call":"%s","peer":"p","kind":"%s","ts":%.3f,"stats":{%s}}',
                       call, kind, ts_us / 1000, joined(values, '"%s":%.17g'))
end

local function line_sample(call, kind, ts_us, values)
  return string.format("rtc_stats,call=%s,kind=%s,peer=p %s %.0f000", call, kind, joined(values, "%s=%.17g"), ts_us)
end

function request()
  if fixed_request then
    return fixed_request
  end
  counter = counter + 1
  local per_call = math.ceil(samples / calls)
  local out = {}
  for i = 0, samples - 1 do
    local slot = math.floor(i / calls)
    local call = string.format("b%d-%d", thread_index, i % calls)
    local kind = slot % 2 == 0 and "audio" or "video"
    local ts_us = base_us + counter * per_call + slot
    if format == "json" then
      out[#out + 1] = json_sample(call, kind, ts_us, fields(kind, counter + i))
    else
      out[#out + 1] = line_sample(call, kind, ts_us, fields(kind, counter + i))
    end
  end
  local body = format == "json" and ("[" .. table.concat(out, ",") .. "]") or table.concat(out, "\n")
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  local totals, counted = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    counted[#counted + 1] = string.format('"%d": %d', status, count)
  end
  io.write(string.format(
    '{"statuses": {%s}, "requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    table.concat(counted, ", "), summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
