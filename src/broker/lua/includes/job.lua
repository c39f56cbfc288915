-- Shared part of every per-job function: key names, the job's hot fields, and
-- the one transition function. Loaded once at library level (see scripts.ts):
-- the state below is per call and set by begin().
--
-- Common ARGV of per-job functions:
--   1 prefix   2 job id   3 now in ms ('' = Redis TIME)   4 retention ms
--   5 late-log grace ms   6 cause (compact JSON array, see docs/design.md)
-- KEYS[1] is the job hash (apply_many: one key per job); the other keys are derived
-- from the prefix (one slot on Redis Cluster only when the prefix carries a hash tag,
-- see docs/design.md).

local P, ID, NOW, RETENTION_MS, LATE_GRACE_MS, CAUSE
local KJ, KS, KX, KD, KCOUNTS, KOUTBOX, KRETAIN, KDUE, CHANNEL
-- S: the job's hot fields; OUT: what the call returns; SPEC_RAW: <job>:s once read
local S, OUT, SPEC_RAW, SPEC_LINE
-- timers this script asked to arm for the focused job (an earlier event's reply holds them)
local ARMED

local function now_ms(arg)
  local n = tonumber(arg)
  if n then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The job the call works on from here (apply_many works on several in turn).
local function focus(id, key)
  ID = id
  KJ = key
  KS = KJ .. ':s' -- spec JSON line, then one history entry per line
  KX = KJ .. ':x' -- mutable values longer than fit a listpack hash (> 64 bytes)
  KD = KJ .. ':d' -- dedupe keys of applied events, scored by time
  S = {}
  OUT = { tr = {}, arm = {}, dis = {} }
  ARMED = {}
  SPEC_RAW = nil
  SPEC_LINE = nil
end

-- The first statement of every per-job function.
local function begin()
  P = ARGV[1]
  ID = ARGV[2]
  NOW = now_ms(ARGV[3])
  RETENTION_MS = tonumber(ARGV[4])
  LATE_GRACE_MS = tonumber(ARGV[5])
  CAUSE = ARGV[6]
  KCOUNTS = P .. ':counts'
  KOUTBOX = P .. ':outbox'
  KRETAIN = P .. ':retain'
  KDUE = P .. ':due'
  CHANNEL = P .. ':notify'
  focus(ID, KEYS[1] or '')
end

local function klog(a) return KJ .. ':l' .. a end
local function kseq(a) return KJ .. ':q' .. a end
local function kdropped(a) return KJ .. ':t' .. a end
local function kstate(s) return P .. ':idx:st:' .. s end

local TT = --@transitions
local TERMINAL = { passed = true, failed = true, canceled = true, timed_out = true, expired = true }
-- At most this many duplicate/stale/late/no-op entries per kind are written to
-- history; the rest are only counted in the job hash.
local HIST_CAP = 16
-- Dedupe memory (SPEC 5.2): while a job lives, <job>:d scores the dedupe keys of
-- its applied events by time (apply_many trims it to a window); at a terminal
-- state it is folded into the job hash field dk, the newest DEDUPE_KEEP_TERMINAL
-- keys (16 hex digits each, so the value stays listpack-sized), and deleted: a
-- finished job keeps no extra key, and replays of its last events stay
-- duplicates (older ones are late, with no effect either).
local DEDUPE_KEEP_TERMINAL = 3

local function seen(dk)
  if TERMINAL[S.s] then
    local kept = redis.call('HGET', KJ, 'dk')
    return kept ~= false and string.find(',' .. kept .. ',', ',' .. dk .. ',', 1, true) ~= nil
  end
  return redis.call('ZSCORE', KD, dk) ~= false
end

-- The job's fields: the hot ones (all a log chunk or heartbeat needs), then the
-- others, from HMGET's reply f at offset at. S.cold says whether those are loaded.
local function set_cold(f, at)
  S.c = tonumber(f[at + 1])
  S.ac = tonumber(f[at + 2])
  S.f = tonumber(f[at + 3])
  S.ta = tonumber(f[at + 4])
  S.tr = tonumber(f[at + 5])
  S.tc = tonumber(f[at + 6])
  S.ad = tonumber(f[at + 7])
  S.rd = tonumber(f[at + 8])
  S.hd = tonumber(f[at + 9])
  S.ha = tonumber(f[at + 10])
  S.cd = tonumber(f[at + 11])
  S.cold = true
end

-- Load the job (its hot fields only with hot_only); false when it does not exist.
local function load_job(hot_only)
  local f
  if hot_only then
    f = redis.call('HMGET', KJ, 's', 'a', 'v', 'th', 'bd', 'lB', 'dn', 'rm', 'tF')
  else
    f = redis.call('HMGET', KJ, 's', 'a', 'v', 'th', 'bd', 'lB', 'dn', 'rm', 'tF',
      'c', 'ac', 'f', 'ta', 'tr', 'tc', 'ad', 'rd', 'hd', 'ha', 'cd')
  end
  if not f[1] then return false end
  S.s = f[1]
  S.a = tonumber(f[2])
  S.v = tonumber(f[3])
  S.th = tonumber(f[4])
  S.bd = tonumber(f[5])
  S.lB = tonumber(f[6]) or 0
  S.dn = tonumber(f[7]) or 0
  S.rm = tonumber(f[8])
  S.tF = tonumber(f[9])
  if hot_only then S.cold = false else set_cold(f, 9) end
  return true
end

local function load_cold()
  if not S.cold then
    set_cold(redis.call('HMGET', KJ, 'c', 'ac', 'f', 'ta', 'tr', 'tc', 'ad', 'rd', 'hd', 'ha', 'cd'), 0)
  end
end

-- <job>:s, read at most once per call (the spec line and history share it).
local function spec_raw()
  if not SPEC_RAW then SPEC_RAW = redis.call('GET', KS) end
  return SPEC_RAW
end

-- History entry, one line appended to KS:
--   [ms since createdAt, kind, from, to, attempt, cause(, detail)]
local function q(s) if s then return '"' .. s .. '"' end return 'null' end
local function hist(kind, from, to, attempt, cause, detail)
  local e = '\n[' .. (NOW - S.c) .. ',"' .. kind .. '",' .. q(from) .. ',' .. q(to) .. ',' .. attempt .. ',' .. cause
  if detail then e = e .. ',' .. detail end
  -- GET + SET rather than APPEND: APPEND over-allocates (doubling) and history
  -- strings are small and mostly final
  SPEC_RAW = spec_raw() .. e .. ']'
  redis.call('SET', KS, SPEC_RAW)
end

-- The spec: the first line of KS.
local function spec_line()
  if not SPEC_LINE then
    local s = spec_raw()
    if not s then return nil end
    local nl = string.find(s, '\n', 1, true)
    if nl then SPEC_LINE = string.sub(s, 1, nl - 1) else SPEC_LINE = s end
  end
  return SPEC_LINE
end

-- Mutable text fields (error, progress, summary, detailsUrl, executor): in the
-- job hash when short enough to keep it a listpack, else in KX. With `into`, a
-- job hash field is added to those pairs (for one HSET) rather than written.
local function set_text(field, value, into)
  if #value <= 64 then
    if into then
      into[#into + 1] = field
      into[#into + 1] = value
    else
      redis.call('HSET', KJ, field, value)
    end
    redis.call('HDEL', KX, field)
  else
    redis.call('HSET', KX, field, value)
    redis.call('HDEL', KJ, field)
  end
end
local function clear_text(...)
  redis.call('HDEL', KJ, ...)
  redis.call('HDEL', KX, ...)
end

-- Duplicate ('d'), stale ('s'), late ('l') or no-op applied ('a') event: counted,
-- and written to history only for the first HIST_CAP of each kind.
local function notify(kind, seq)
  local m = '{"id":"' .. ID .. '","v":' .. S.v .. ',"state":"' .. S.s .. '","kind":"' .. kind .. '"'
  if seq then m = m .. ',"seq":' .. seq end
  redis.call('PUBLISH', CHANNEL, m .. '}')
end

-- An event with no effect (duplicate, stale, late, no-op): counted, and the first
-- HIST_CAP of each kind in history, announced to the events streams as they come.
local function record(kind, attempt, detail)
  local n = redis.call('HINCRBY', KJ, 'n' .. kind, 1)
  if n <= HIST_CAP then
    hist(kind, nil, nil, attempt, CAUSE, detail)
    notify('history')
  end
end

-- Outbox record: meta fields (_j id, _t type, _a a second type the same record
-- stands for, _s spec, _f from, _o to, _c cause), then the job fields a
-- published change carries (OUTBOX_FIELDS, as they are after this change) as
-- plain stream fields: no JSON encoding inside Redis.
local OUTBOX_FIELDS = { 's', 'a', 'v', 'c', 'ac', 'f', 'hb', 'x', 'fo', 'ax', 'er', 'pg', 'sm', 'du' }
local function outbox(typ, from, to, cause, also, detail)
  local args = { 'XADD', KOUTBOX, '*', '_j', ID, '_t', typ, '_s', spec_line() }
  if detail then
    args[#args + 1] = '_d'
    args[#args + 1] = detail
  end
  if also then
    args[#args + 1] = '_a'
    args[#args + 1] = also
  end
  if from then
    args[#args + 1] = '_f'
    args[#args + 1] = from
  end
  if to then
    args[#args + 1] = '_o'
    args[#args + 1] = to
  end
  if cause then
    args[#args + 1] = '_c'
    args[#args + 1] = cause
  end
  local h = redis.call('HMGET', KJ, unpack(OUTBOX_FIELDS))
  for i, f in ipairs(OUTBOX_FIELDS) do
    if h[i] then
      args[#args + 1] = f
      args[#args + 1] = h[i]
    end
  end
  for _, v in ipairs(redis.call('HGETALL', KX)) do args[#args + 1] = v end
  redis.call(unpack(args))
end

-- Timers: every deadline is a member "kind|attempt|due|id" of <prefix>:due
-- (ZSET by due time), written atomically with the change. Deadlines within
-- ARM_WINDOW_MS are returned so the caller arms them as BullMQ delayed jobs at
-- once; the rest are armed by the periodic scan when they come that close.
-- Disarming removes the member, or (when already armed) asks the caller to
-- remove the BullMQ job.
local ARM_WINDOW_MS = 60000
local function arm(kind, due)
  local m = kind .. '|' .. S.a .. '|' .. due
  redis.call('ZADD', KDUE, due, m .. '|' .. ID)
  if due - NOW <= ARM_WINDOW_MS then
    OUT.arm[#OUT.arm + 1] = m
    ARMED[m] = true
  end
end
local function disarm(kind, due)
  if not due then return end
  local m = kind .. '|' .. S.a .. '|' .. due
  if redis.call('ZREM', KDUE, m .. '|' .. ID) == 1 then
    -- not in BullMQ yet; drop it if this same event asked to arm it
    local mine = false
    for i = #OUT.arm, 1, -1 do
      if OUT.arm[i] == m then
        table.remove(OUT.arm, i)
        mine = true
      end
    end
    -- an earlier event of this script asked (its reply is written): the caller drops it
    if ARMED[m] and not mine then
      OUT.dis = OUT.dis or {}
      OUT.dis[#OUT.dis + 1] = m
    end
  else
    -- already a BullMQ delayed job: the caller removes it (best effort; if that
    -- fails it fires as a no-op)
    OUT.dis = OUT.dis or {}
    OUT.dis[#OUT.dis + 1] = m
  end
end

local function leave_timers(from)
  if from == 'pending' then
    disarm('accept', S.ad)
    disarm('retry', S.bd)
    S.ad = nil
    S.bd = nil
    redis.call('HDEL', KJ, 'ad', 'bd')
  elseif from == 'running' then
    disarm('run', S.rd)
    disarm('heartbeat', S.ha)
    S.rd = nil
    S.hd = nil
    S.ha = nil
    redis.call('HDEL', KJ, 'rd', 'hd', 'ha')
  elseif from == 'canceling' then
    disarm('cancel_grace', S.cd)
    S.cd = nil
    redis.call('HDEL', KJ, 'cd')
  end
end

local function enter_pending()
  S.ad = NOW + S.ta
  redis.call('HSET', KJ, 'ad', S.ad)
  arm('accept', S.ad)
end

local function enter_running()
  S.rd = S.ac + S.tr
  redis.call('HSET', KJ, 'rd', S.rd)
  arm('run', S.rd)
  if S.th > 0 then
    S.hd = NOW + S.th
    S.ha = S.hd
    redis.call('HSET', KJ, 'hd', S.hd, 'ha', S.ha)
    arm('heartbeat', S.ha)
  end
end

-- The one way a state changes: checks the table, sets state, bumps version,
-- appends history, moves index entries and counters, writes the outbox record
-- and publishes the notification. next_attempt is set only for a retry; also
-- names a command the same outbox record stands for (job.created when the
-- change starts an attempt, job.cancel_requested).
local function transition(to, detail, next_attempt, also)
  local from = S.s or 'none'
  if not (TT[from] and TT[from][to]) then
    return error('EXTJOB_ILLEGAL_TRANSITION ' .. from .. ' -> ' .. to)
  end
  leave_timers(from)
  local attempt = S.a
  S.s = to
  S.v = (S.v or 0) + 1
  if next_attempt then
    S.a = next_attempt
    redis.call('HSET', KJ, 's', to, 'v', S.v, 'a', S.a)
  else
    redis.call('HSET', KJ, 's', to, 'v', S.v)
  end
  if TERMINAL[to] then
    S.f = NOW
    redis.call('HSET', KJ, 'f', NOW)
    redis.call('HDEL', KJ, 'ta', 'th', 'tr', 'tc')
    -- retention: a list per time bucket (~25 bytes a job instead of a ZSET
    -- entry's ~100); <prefix>:retain scores each bucket by its end
    local width = math.max(10, math.min(60000, math.floor(RETENTION_MS / 100)))
    local start = math.floor((NOW + RETENTION_MS) / width) * width
    local bucket = start .. ':' .. width
    redis.call('RPUSH', KRETAIN .. ':' .. bucket, ID)
    redis.call('ZADD', KRETAIN, start + width, bucket)
    -- the log keys kept for a retry (apply_many.lua): no attempt follows now, and
    -- the replays they catch can come only while late chunks are still stored
    if S.rm then redis.call('PEXPIRE', KJ .. ':k', LATE_GRACE_MS + 1000) end
    local kept = redis.call('ZREVRANGE', KD, 0, DEDUPE_KEEP_TERMINAL - 1)
    if #kept > 0 then
      redis.call('HSET', KJ, 'dk', table.concat(kept, ','))
      redis.call('DEL', KD)
    end
  end
  if from ~= 'none' then hist('t', from, to, attempt, CAUSE, detail) else hist('t', nil, to, attempt, CAUSE, detail) end
  if from ~= 'none' then
    redis.call('ZREM', kstate(from), ID)
    redis.call('HINCRBY', KCOUNTS, from, -1)
  end
  redis.call('ZADD', kstate(to), S.c, ID)
  redis.call('HINCRBY', KCOUNTS, to, 1)
  outbox('job.changed', from ~= 'none' and from or nil, to, CAUSE, also, detail)
  notify('state')
  OUT.tr[#OUT.tr + 1] = { from, to }
  -- when it started running: a retry in the same call clears ac before the reply
  if to == 'running' then OUT.ra = NOW end
end

-- A new attempt is announced on the commands topic and its accept timer starts.
-- with_change: the transition just made already carries job.created.
local function announce_attempt(with_change)
  if not with_change then outbox('job.created', nil, nil, CAUSE) end
  enter_pending()
end

-- The retry policy (SPEC 3) if it allows another attempt, else nil.
local function retry_policy(exit_code, is_timeout)
  local r = cjson.decode(spec_line()).r
  if type(r) ~= 'table' then return nil end
  if S.a >= 1 + (tonumber(r.limit) or 0) then return nil end
  if type(r.onExitCodes) == 'table' then
    if is_timeout or exit_code == nil then return nil end
    for _, c in ipairs(r.onExitCodes) do
      if c == exit_code then return r end
    end
    return nil
  end
  return r
end

-- End the running attempt as failed or timed_out, or retry it (running ->
-- pending with attempt + 1) when the policy allows.
local function end_attempt(to, detail, exit_code, is_timeout)
  local r = retry_policy(exit_code, is_timeout)
  if not r then
    transition(to, detail)
    return
  end
  local retry_detail = '{"outcome":"' .. to .. '","next":' .. (S.a + 1)
  if exit_code then retry_detail = retry_detail .. ',"exitCode":' .. exit_code end
  if detail then retry_detail = retry_detail .. ',"detail":' .. detail end
  retry_detail = retry_detail .. '}'
  -- per-attempt fields start afresh; the finished attempt stays in history, and
  -- what its log read needs (dropped chunks and their run, lastSeq) moves to its chunk hash
  local kept = redis.call('HMGET', KJ, 'lT', 'lTB', 'lm', 'tR')
  local moved = {}
  for i, name in ipairs({ 'T', 'TB', 'L', 'R' }) do
    if kept[i] then
      moved[#moved + 1] = name
      moved[#moved + 1] = kept[i]
    end
  end
  if #moved > 0 then redis.call('HSET', klog(S.a), unpack(moved)) end
  redis.call('HDEL', KJ, 'ac', 'x', 'hb', 'lB', 'lT', 'lTB', 'tF', 'tR', 'lm', 'fo')
  clear_text('er', 'pg', 'sm', 'du')
  S.ac = nil
  S.lB = 0
  S.tF = nil
  local backoff = math.floor((tonumber(r.backoffSeconds) or 0) * 1000)
  if backoff > 0 then
    transition('pending', retry_detail, S.a + 1)
    S.bd = NOW + backoff
    redis.call('HSET', KJ, 'bd', S.bd)
    arm('retry', S.bd)
  else
    transition('pending', retry_detail, S.a + 1, 'job.created')
    announce_attempt(true)
  end
end

local function executor_of()
  local s = spec_line()
  if not s then return nil end
  -- the spec JSON starts with the executor when there is one (see spec.ts)
  if string.sub(s, 1, 6) ~= '{"e":"' then return nil end
  local plain = string.match(s, '^{"e":"([^"\\]*)"')
  if plain then return plain end
  local e = cjson.decode(s).e
  if type(e) == 'string' then return e end
  return nil
end

-- The executor that accepted the current or an earlier attempt ('ax'), if it named one.
local function accepted_executor()
  return redis.call('HGET', KJ, 'ax') or redis.call('HGET', KX, 'ax')
end

local function result(r, extra)
  OUT.r = r
  OUT.v = S.v
  OUT.a = S.a
  OUT.s = S.s
  if #OUT.tr > 0 then
    OUT.c = S.c
    OUT.ac = S.ac
    OUT.f = S.f
    -- a job created without an executor is the accepting executor's (as it is listed)
    OUT.e = executor_of() or accepted_executor() or nil
  end
  if extra then
    for k, v in pairs(extra) do OUT[k] = v end
  end
  return cjson.encode(OUT)
end
