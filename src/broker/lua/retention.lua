--[[
  retention: remove terminal jobs whose retention passed, with every key and
  index entry they own.

  KEYS[1]  <prefix>:retain (ZSET bucket -> bucket end ms); each bucket is a
           LIST <prefix>:retain:<start>:<width> of job ids due in it
  ARGV[1]  prefix
  ARGV[2]  now in ms ('' = Redis TIME)
  ARGV[3]  at most this many jobs per call

  Returns { the number of jobs removed, 1 when due buckets remain (call again) }.
  Emits nothing (no transition).
]]
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
if not NOW then
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
--@include indexes

local LIMIT = tonumber(ARGV[3])
local removed = 0

local function remove(id)
  local kj = P .. ':job:{' .. id .. '}'
  local f = redis.call('HMGET', kj, 's', 'a')
  local state = f[1]
  if not state then return end
  local spec = redis.call('GET', kj .. ':s')
  if spec then
    local nl = string.find(spec, '\n', 1, true)
    if nl then spec = string.sub(spec, 1, nl - 1) end
    for _, k in ipairs(index_keys(P, cjson.decode(spec))) do redis.call('ZREM', k, id) end
  end
  -- the executor that accepted a job created without one (apply_many.lua)
  local ax = redis.call('HGET', kj, 'ax') or redis.call('HGET', kj .. ':x', 'ax')
  if ax then redis.call('ZREM', P .. ':idx:ex:' .. ax, id) end
  redis.call('ZREM', P .. ':idx:st:' .. state, id)
  redis.call('HINCRBY', P .. ':counts', state, -1)
  local keys = { kj, kj .. ':s', kj .. ':x', kj .. ':d', kj .. ':k' }
  for a = 1, tonumber(f[2]) or 1 do
    keys[#keys + 1] = kj .. ':l' .. a
    keys[#keys + 1] = kj .. ':q' .. a
    keys[#keys + 1] = kj .. ':t' .. a
    keys[#keys + 1] = kj .. ':k' .. a -- the replay keys as older versions kept them
  end
  redis.call('UNLINK', unpack(keys))
end

local buckets = redis.call('ZRANGE', KEYS[1], '-inf', NOW, 'BYSCORE', 'LIMIT', 0, 100)
for _, bucket in ipairs(buckets) do
  local bk = KEYS[1] .. ':' .. bucket
  while removed < LIMIT do
    local id = redis.call('LPOP', bk)
    if not id then break end
    remove(id)
    removed = removed + 1
  end
  if redis.call('EXISTS', bk) == 0 then redis.call('ZREM', KEYS[1], bucket) end
  if removed >= LIMIT then break end
end
-- a call takes at most 100 buckets: after an outage (or with a short retention) more
-- may be due than that however few jobs they hold
local more = redis.call('ZCOUNT', KEYS[1], '-inf', NOW) > 0 and 1 or 0
return { removed, more }
