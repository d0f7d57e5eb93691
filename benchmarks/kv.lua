-- wrk: KV puts or gets against Trellis (Consul API) or etcd (v3 JSON gateway).
-- usage: wrk -s kv.lua URL -- trellis|etcd put|get
-- Requests are built once in init() so both targets cost the client the same per request.
local requests, i = {}, 0
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

local function b64(s)
  local out = {}
  for p = 1, #s, 3 do
    local a, b, c = s:byte(p, p + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local idx = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64 }
    out[#out + 1] = alphabet:sub(idx[1] + 1, idx[1] + 1) .. alphabet:sub(idx[2] + 1, idx[2] + 1)
      .. (b and alphabet:sub(idx[3] + 1, idx[3] + 1) or '=') .. (c and alphabet:sub(idx[4] + 1, idx[4] + 1) or '=')
  end
  return table.concat(out)
end

function init(args)
  local target, op = args[1], args[2]
  local value = string.rep("v", 64)
  for n = 1, 1000 do
    local key = string.format("bench/key-%04d", n)
    if target == "trellis" and op == "put" then
      requests[n] = wrk.format("PUT", "/v1/kv/" .. key, nil, value)
    elseif target == "trellis" then
      requests[n] = wrk.format("GET", "/v1/kv/" .. key)
    elseif op == "put" then
      requests[n] = wrk.format("POST", "/v3/kv/put", nil, string.format('{"key":"%s","value":"%s"}', b64(key), b64(value)))
    else
      requests[n] = wrk.format("POST", "/v3/kv/range", nil, string.format('{"key":"%s"}', b64(key)))
    end
  end
  i = math.random(1, 1000)
end

function request()
  i = i % 1000 + 1
  return requests[i]
end
