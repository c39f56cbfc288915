--[[
  fire_timer: a BullMQ timer fired; act if the job is still in the state and
  attempt the timer was armed for and its deadline (kept in the job hash) has
  passed. A timer that fires before the deadline (the deadline moved, e.g. a
  heartbeat) re-arms itself at the new deadline. Otherwise a no-op.

  KEYS[1]  job hash <prefix>:job:{<id>}
  ARGV 1-6 common (see includes/job.lua); ARGV[6] is ["t","<kind>"]
  ARGV[7]  kind: accept | heartbeat | run | cancel_grace | retry
  ARGV[8]  attempt the timer was armed for
  ARGV[9]  due time (ms) the timer was armed for

  Returns a JSON object: r = fired | rearmed | noop | gone, tr, arm,
  timeout (kind, when the timer timed the job out, expired it or forced a cancel).
  Emits: transitions (see transition()), timer intents.
]]
--@include job
begin()

if not load_job() then return cjson.encode({ r = 'gone' }) end

local KIND = ARGV[7]
local ATT = tonumber(ARGV[8])
local DUE = tonumber(ARGV[9])
-- BullMQ and Redis clocks may differ by a few ms; treat that as on time.
local TOLERANCE = 20

if ATT ~= S.a then return result('noop') end

local function deadline_for(kind)
  if kind == 'accept' and S.s == 'pending' then return S.ad end
  if kind == 'retry' and S.s == 'pending' then return S.bd end
  if kind == 'run' and S.s == 'running' then return S.rd end
  if kind == 'heartbeat' and S.s == 'running' then return S.hd end
  if kind == 'cancel_grace' and S.s == 'canceling' then return S.cd end
  return nil
end

local deadline = deadline_for(KIND)
if not deadline then return result('noop') end

if NOW + TOLERANCE < deadline then
  -- early: re-arm at the deadline (a new id: the due time is part of it)
  local due = deadline
  if due == DUE then due = DUE + 1 end
  if KIND == 'heartbeat' then
    S.ha = due
    redis.call('HSET', KJ, 'ha', due)
  end
  arm(KIND, due)
  return result('rearmed')
end

if KIND == 'accept' then
  transition('expired')
  return result('fired', { timeout = 'accept' })
elseif KIND == 'retry' then
  S.bd = nil
  redis.call('HDEL', KJ, 'bd')
  announce_attempt()
  return result('fired')
elseif KIND == 'run' or KIND == 'heartbeat' then
  end_attempt('timed_out', '{"timer":"' .. KIND .. '"}', nil, true)
  return result('fired', { timeout = KIND })
elseif KIND == 'cancel_grace' then
  S.fo = 1
  redis.call('HSET', KJ, 'fo', 1)
  transition('canceled', '{"forced":true}')
  return result('fired', { timeout = 'cancel_grace' })
end
return result('noop')
