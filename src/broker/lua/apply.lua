--[[
  apply: apply one executor event to a job, exactly once.

  KEYS[1]  job hash <prefix>:job:{<id>}
  ARGV 1-6 common (see includes/job.lua); ARGV[6] is the event cause
  ARGV[7]  kind: accepted | heartbeat | log | finished | canceled
  ARGV[8]  dedupe key of (source, id) (hex, computed by the caller)
  ARGV[9]  attempt ('' = the job's current attempt)
  accepted:  ARGV[10] executor, ARGV[11] detailsUrl
  heartbeat: ARGV[10] progress JSON ('' = none)
  log:       ARGV[10] seq, ARGV[11] bytes, ARGV[12] log max bytes
  finished:  ARGV[10] exitCode, ARGV[11] error JSON (''), ARGV[12] summary (''), ARGV[13] lastSeq ('')
  canceled:  ARGV[10] reason

  Returns a JSON object: r = applied | duplicate | stale | late | unknown_job | invalid,
  tr (transitions made), arm (timers due within the arm window), log (stored |
  truncated | duplicate for log events).
  Emits: transitions (see transition()), notify kind=log for stored chunks and
  kind=progress for progress, dedupe entry, history/counters for
  duplicate/stale/late events.
]]
--@include job

if not load_job() then return cjson.encode({ r = 'unknown_job' }) end

local KIND = ARGV[7]
local DK = ARGV[8]
-- While a retry waits out its backoff nobody has been told of the new attempt: an
-- event that names no attempt belongs to the one that just ended (stale).
local ATT = tonumber(ARGV[9]) or (S.bd and S.a - 1 or S.a)

if ATT < S.a then
  record('s', ATT)
  return result('stale')
end
if ATT > S.a or (S.bd and ATT == S.a) then
  return result('invalid', { why = 'attempt ' .. ATT .. ' does not exist yet' })
end

local SLOTS = {}
for i = 0, DEDUPE_SLOTS - 1 do SLOTS[#SLOTS + 1] = 'd' .. i end
if KIND ~= 'log' then
  for _, seen in ipairs(redis.call('HMGET', KJ, unpack(SLOTS))) do
    if seen == DK then
      record('d', ATT)
      return result('duplicate')
    end
  end
end

local function remember()
  local n = redis.call('HINCRBY', KJ, 'dn', 1)
  redis.call('HSET', KJ, 'd' .. ((n - 1) % DEDUPE_SLOTS), DK)
end

local function touch()
  redis.call('HSET', KJ, 'hb', NOW)
  if S.s == 'running' and S.th and S.th > 0 then
    S.hd = NOW + S.th
    redis.call('HSET', KJ, 'hd', S.hd)
  end
end

-- Store a log chunk of the current attempt; late chunks are flagged.
local function store_log(late)
  local seq = ARGV[10]
  local data = ARGV[11]
  local kl = klog(S.a)
  if redis.call('HEXISTS', kl, seq) == 1 then return 'duplicate' end
  local size = #data
  if S.lB + size > tonumber(ARGV[12]) then
    redis.call('HINCRBY', KJ, 'lT', 1)
    redis.call('HINCRBY', KJ, 'lTB', size)
    return 'truncated'
  end
  redis.call('HSET', kl, seq, data)
  local member = seq
  if late then member = seq .. ':L' end
  redis.call('ZADD', kseq(S.a), tonumber(seq), member)
  redis.call('HINCRBY', KJ, 'lB', size)
  redis.call('HINCRBY', KJ, 'ng', 1)
  notify('log', seq)
  return 'stored'
end

if TERMINAL[S.s] then
  if KIND == 'log' and S.f and NOW <= S.f + LATE_GRACE_MS then
    local stored = store_log(true)
    if stored == 'duplicate' then
      record('d', ATT)
      return result('duplicate', { log = stored })
    end
    record('l', ATT, '{"stored":"' .. stored .. '"}')
    return result('late', { log = stored })
  end
  record('l', ATT)
  return result('late')
end

-- finished, log or heartbeat on a pending job implies accepted (SPEC 5.4)
if S.s == 'pending' and (KIND == 'accepted' or KIND == 'heartbeat' or KIND == 'log' or KIND == 'finished') then
  S.ac = NOW
  redis.call('HSET', KJ, 'ac', NOW)
  if KIND == 'accepted' then
    if ARGV[10] ~= '' then set_text('ax', ARGV[10]) end
    if ARGV[11] ~= '' then set_text('du', ARGV[11]) end
    transition('running')
  else
    transition('running', '{"implied":true}')
  end
  enter_running()
  if KIND == 'accepted' then
    remember()
    return result('applied')
  end
end

local extra = nil
if KIND == 'accepted' then
  -- already running or canceling: nothing changes but links
  if ARGV[11] ~= '' then set_text('du', ARGV[11]) end
  record('a', ATT, '{"noop":"accepted"}')
elseif KIND == 'heartbeat' then
  touch()
  if ARGV[10] ~= '' then
    set_text('pg', ARGV[10])
    notify('progress')
  end
elseif KIND == 'log' then
  touch()
  local stored = store_log(false)
  extra = { log = stored }
  if stored == 'duplicate' then
    record('d', ATT)
    return result('duplicate', extra)
  end
elseif KIND == 'finished' then
  local code = tonumber(ARGV[10])
  redis.call('HSET', KJ, 'x', code)
  if ARGV[11] ~= '' then set_text('er', ARGV[11]) end
  if ARGV[12] ~= '' then set_text('sm', ARGV[12]) end
  if ARGV[13] ~= '' then redis.call('HSET', KJ, 'lm', ARGV[13]) end
  if S.s == 'canceling' then
    transition('canceled', '{"exitCode":' .. code .. '}')
  elseif code == 0 and ARGV[11] == '' then
    transition('passed')
  else
    end_attempt('failed', nil, code, false)
  end
elseif KIND == 'canceled' then
  if S.s == 'pending' or S.s == 'canceling' then
    transition('canceled')
  else
    -- running: the executor gave up without being asked; not retried
    set_text('er', cjson.encode({ type = 'canceled_by_executor', message = ARGV[10] }))
    transition('failed', '{"canceledByExecutor":true}')
  end
else
  return error('EXTJOB_BAD_ARGUMENT unknown event kind ' .. KIND)
end
if KIND ~= 'log' then remember() end
return result('applied', extra)
