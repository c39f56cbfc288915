--[[
  get: read one job in one command (the API's GET /v1/jobs/{id} and listings).

  KEYS[1]  job hash <prefix>:job:{<id>}

  Returns { job hash as a flat array, the spec line (first line of <job>:s, without
  the history), <job>:x as a flat array }; the spec line is false when the job does
  not exist. Reads only; emits nothing.
]]
local KJ = KEYS[1]
local raw = redis.call('GET', KJ .. ':s')
if not raw then return { {}, false, {} } end
local nl = string.find(raw, '\n', 1, true)
local spec = raw
if nl then spec = string.sub(raw, 1, nl - 1) end
return { redis.call('HGETALL', KJ), spec, redis.call('HGETALL', KJ .. ':x') }
