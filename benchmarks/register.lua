-- wrk: durable agent registrations with unique IDs (one Lua state per wrk thread).
local prefix, counter = 0, 0
function init(args) prefix = math.random(1, 1e9) end
function request()
  counter = counter + 1
  local body = string.format('{"Name":"bench","ID":"bench-%d-%d","Port":8080}', prefix, counter)
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end  -- -H flags (an ACL token)
  return wrk.format("PUT", "/v1/agent/service/register", headers, body)
end
