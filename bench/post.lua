-- wrk script: POST one fixed JSON body.
--   BENCH_BODY_FILE  path of the JSON body (or BENCH_BODY: the body itself)
--   BENCH_KEY        bearer token (omitted when empty: the fake upstream does not check it)
local body = os.getenv("BENCH_BODY")
local path = os.getenv("BENCH_BODY_FILE")
if path and path ~= "" then
  local f = assert(io.open(path, "rb"))
  body = f:read("*a")
  f:close()
end
assert(body and body ~= "", "set BENCH_BODY_FILE or BENCH_BODY")
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
