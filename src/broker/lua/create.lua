--[[
  create: create a job (none -> pending), or report that it exists.

  KEYS[1]  job hash <prefix>:job:{<id>}
  ARGV 1-6 common (see includes/job.lua)
  ARGV[7]  spec hash (idempotency: same id + same hash = same job)
  ARGV[8]  spec JSON (stored as <job>:s)
  ARGV[9]  event token sha256 (base64url)
  ARGV[10..13] timeouts in ms: accept, heartbeat (0 = off), run, cancel grace
  ARGV[14] this call's mark (random): the same call sent again is told by it
  ARGV[15..] executor and label index keys (the same names retention.lua derives
           from the spec with includes/indexes.lua)

  Returns a JSON object: r = "created" | "exists" | "conflict", plus the job hash
  (h) on created/exists, the stored spec line (s) on exists, and the timers to arm
  (arm).
  Emits (when created): transition none -> pending (history, indexes, counters,
  one outbox record for job.changed and job.created, notify), accept timer intent,
  executor and label index entries.
]]
--@include job
begin()

if redis.call('EXISTS', KJ) == 1 then
  local sh = redis.call('HGET', KJ, 'sh')
  local f = redis.call('HMGET', KJ, 'sh', 'tk', 'cm', 's', 'a', 'ad')
  if f[1] == ARGV[7] and f[3] == ARGV[14] then
    -- this very call again: the Redis client sent it once more after losing the reply
    -- (a reconnect). Answer as it first did, so the caller gets its token, announces
    -- the creation and arms the accept timer.
    if f[4] == 'pending' and f[5] == '1' and f[6] and tonumber(f[6]) - NOW <= ARM_WINDOW_MS then
      OUT.arm[1] = 'accept|1|' .. f[6]
    end
    return cjson.encode({ r = 'created', h = redis.call('HGETALL', KJ), arm = OUT.arm, tr = { { 'none', 'pending' } }, e = executor_of() })
  end
  if f[1] == ARGV[7] then
    -- the stored spec: its timeouts are those of the defaults when it was created;
    -- tm: another call of the creator (same idempotency key, so the same token): it
    -- gets its token, and the creation, announced by the first, is not announced again
    return cjson.encode({ r = 'exists', tm = f[2] == ARGV[9] and 1 or nil, h = redis.call('HGETALL', KJ), x = redis.call('HGETALL', KX), s = spec_line() })
  end
  return cjson.encode({ r = 'conflict' })
end

S.c = NOW
S.a = 1
S.v = 0
S.ta = tonumber(ARGV[10])
S.th = tonumber(ARGV[11])
S.tr = tonumber(ARGV[12])
S.tc = tonumber(ARGV[13])
redis.call('HSET', KJ, 'sh', ARGV[7], 'tk', ARGV[9], 'cm', ARGV[14], 'c', NOW, 'a', 1, 'v', 0,
  'ta', S.ta, 'th', S.th, 'tr', S.tr, 'tc', S.tc)
SPEC_RAW = ARGV[8]
-- the last attempt the retry policy allows, when it allows more than one (see log_key)
local retry = cjson.decode(SPEC_RAW).r
if type(retry) == 'table' and (tonumber(retry.limit) or 0) > 0 then
  redis.call('HSET', KJ, 'rm', 1 + retry.limit)
end
redis.call('SET', KS, SPEC_RAW)
for i = 15, #ARGV do
  redis.call('ZADD', ARGV[i], NOW, ID)
end
transition('pending', nil, nil, 'job.created')
announce_attempt(true)
return cjson.encode({ r = 'created', h = redis.call('HGETALL', KJ), arm = OUT.arm, tr = OUT.tr, e = executor_of() })
