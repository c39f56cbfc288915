--[[
  retention: remove terminal jobs whose retention passed, with every key and
  index entry they own.

  KEYS[1]  <prefix>:retain (ZSET id -> due ms)
  ARGV[1]  prefix
  ARGV[2]  now in ms ('' = Redis TIME)
  ARGV[3]  at most this many jobs per call

  Returns the number of jobs removed. Emits nothing (no transition).
]]
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
if not NOW then
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
--@include indexes

local ids = redis.call('ZRANGE', KEYS[1], '-inf', NOW, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local kj = P .. ':job:{' .. id .. '}'
  local f = redis.call('HMGET', kj, 's', 'a')
  local state = f[1]
  if state then
    local spec = redis.call('GET', kj .. ':s')
    if spec then
      for _, k in ipairs(index_keys(cjson.decode(spec))) do redis.call('ZREM', k, id) end
    end
    redis.call('ZREM', P .. ':idx:st:' .. state, id)
    redis.call('HINCRBY', P .. ':counts', state, -1)
    local keys = { kj, kj .. ':s', kj .. ':x', kj .. ':h', kj .. ':d' }
    for a = 1, tonumber(f[2]) or 1 do
      keys[#keys + 1] = kj .. ':l' .. a
      keys[#keys + 1] = kj .. ':q' .. a
    end
    redis.call('UNLINK', unpack(keys))
  end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
