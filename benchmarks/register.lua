-- wrk: durable agent registrations with unique IDs (one Lua state per wrk thread).
local prefix, counter = 0, 0
function init(args) prefix = math.random(1, 1e9) end
function request()
  counter = counter + 1
  local body = string.format('{"Name":"bench","ID":"bench-%d-%d","Port":8080}', prefix, counter)
  return wrk.format("PUT", "/v1/agent/service/register", {["Content-Type"] = "application/json"}, body)
end
