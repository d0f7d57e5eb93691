-- wrk: durable etcd puts through the v3 JSON gateway, unique keys.
local prefix, counter = 0, 0
function init(args) prefix = math.random(1, 1e9) end
local function b64(s)
  local chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  return ((s:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#s % 3 + 1])
end
function request()
  counter = counter + 1
  local key = string.format("bench/%d/%d", prefix, counter)
  local body = string.format('{"key":"%s","value":"%s"}', b64(key), b64('{"Name":"bench","Port":8080}'))
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
end
