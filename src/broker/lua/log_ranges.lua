--[[
  log_ranges: the seqs of an attempt's seq ZSET as ranges of consecutive seqs,
  without reading every member: a range of seqs whose ZCOUNT is its width is whole;
  any other is halved, and read member by member once it is 64 seqs or fewer. A log
  with a few holes costs a few dozen ZCOUNTs; one with holes everywhere, about one
  read of its members.

  KEYS[1]  the attempt's seq ZSET (members <seq> or <seq>:L, scored by seq)

  Returns { lo1, hi1, lo2, hi2, ... }: inclusive ranges, ascending, apart.
  Reads only.
]]
local key = KEYS[1]
local out = {}

local function add(lo, hi)
  local n = #out
  if n > 0 and out[n] + 1 == lo then
    out[n] = hi
  else
    out[n + 1] = lo
    out[n + 2] = hi
  end
end

local function walk(lo, hi)
  local count = redis.call('ZCOUNT', key, lo, hi)
  if count == 0 then return end
  if count == hi - lo + 1 then return add(lo, hi) end
  if hi - lo < 64 then
    local m = redis.call('ZRANGEBYSCORE', key, lo, hi, 'WITHSCORES')
    for i = 2, #m, 2 do
      local s = tonumber(m[i])
      add(s, s)
    end
    return
  end
  local mid = math.floor((lo + hi) / 2)
  walk(lo, mid)
  walk(mid + 1, hi)
end

local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if #first == 0 then return out end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
walk(tonumber(first[2]), tonumber(last[2]))
return out
