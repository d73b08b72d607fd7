-- wrk script for the soak: paced POSTs, stop after a quota of completed responses.
--   BENCH_BODY_FILES  comma-separated JSON body files, sent in turn (e.g. an OpenAI and an Anthropic model)
--   BENCH_KEY         bearer token
--   BENCH_RATE        target requests per second for this wrk thread (run with -t1)
--   BENCH_QUOTA       stop after this many completed responses (0: run for wrk's -d)
--   BENCH_FLAG        file created when the quota is reached (the runner then sends SIGINT to wrk)
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local key = os.getenv("BENCH_KEY") or ""
local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local quota = tonumber(os.getenv("BENCH_QUOTA") or "0") or 0
local flag = os.getenv("BENCH_FLAG") or ""
local requests = {}
for path in string.gmatch(os.getenv("BENCH_BODY_FILES") or "", "[^,]+") do
  local f = assert(io.open(path, "rb"))
  local body = f:read("*a")
  f:close()
  local headers = {["Content-Type"] = "application/json"}
  if key ~= "" then headers["Authorization"] = "Bearer " .. key end
  requests[#requests + 1] = wrk.format("POST", nil, headers, body)
end
assert(#requests > 0, "set BENCH_BODY_FILES")

local i = 0
function request()
  i = i + 1
  return requests[(i - 1) % #requests + 1]
end

local interval = rate > 0 and 1000 / rate or 0
local next_at = nil
function delay()
  if interval == 0 then return 0 end
  local t = now_ms()
  if next_at == nil or next_at < t - 1000 then next_at = t end -- never burst more than 1 s of backlog
  next_at = next_at + interval
  local d = next_at - t
  if d < 0 then return 0 end
  return math.floor(d)
end

local done = 0
local flagged = false
function response(status, headers, body)
  done = done + 1
  if quota > 0 and done >= quota and not flagged then
    flagged = true
    if flag ~= "" then
      local f = io.open(flag, "w")
      if f then f:write(tostring(done)); f:close() end
    end
    wrk.thread:stop()
  end
end
