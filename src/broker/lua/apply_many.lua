--[[
  apply_many: apply executor events of one or more jobs, each job's in order,
  exactly once each: the same per-event results and effects as one call per
  event, with each job loaded once and the log-chunk hot path written in bulk.
  One call for many jobs saves a command (and its Lua entry) per job.

  KEYS[j]  job hash <prefix>:job:{<id>} of the j-th job
  ARGV 1-5 common (see includes/job.lua); ARGV[2] and ARGV[6] are unused (each job
           has its id, each event its cause)
  ARGV[7]  number of jobs
  ARGV[8]  dedupe window ms: applied events are remembered (by dedupe key) at
           least this long, at most DEDUPE_MAX per job
  ARGV[9]  log max bytes (per attempt)
  ARGV[10] the jobs and their events, one JSON array (one argument rather than
           several per event: cheaper to send and to receive): per job its id, its
           number of events n, then its n events, each as
             kind, attempt ('' = current), event id, source, type (short, see
             codec.ts; the three make the cause, encoded only when written), then by kind:
               log:       seq (decimal text), bytes (text, or k: the bytes are ARGV[10 + k])
               heartbeat: dedupe key, progress JSON ('' = none)
               accepted:  dedupe key, executor, detailsUrl
               finished:  dedupe key, exitCode, error JSON (''), summary (''), lastSeq ('')
               canceled:  dedupe key, reason
  ARGV 11- binary log chunks (not valid UTF-8, so not JSON text)

  Returns per job, in order: the number of its events when all of them were log
  chunks or heartbeats applied on the fast path (the bulk of traffic: nothing else
  to report), otherwise one reply per event, in order: the bare string `applied`
  for such an event, otherwise a JSON object: r = applied | duplicate | stale | late |
  unknown_job | invalid, tr (transitions made), arm (timers due within the arm
  window), log (stored | truncated | duplicate for log events), why (invalid).
  Emits: transitions (see transition()), notify kind=log and kind=progress, dedupe
  entries (<job>:d), history/counters for duplicate/stale/late events.

  Log chunks and heartbeats of a running or canceling job (the bulk of traffic)
  take a fast path: the chunk's hash field (and the run, or a ZSET entry for a
  chunk out of order), and the heartbeat's dedupe entry, are written in bulk;
  the heartbeat time, the log byte count and the latest progress once, before
  anything else reads them (any other event first writes them out). Whether a
  chunk is stored the chunk index tells (a chunk past the run and the ZSET is
  new, with no lookup); which heartbeats are, one ZMSCORE per job. A run of stored chunks is
  announced by one log notification carrying the last stored seq (rather than
  one per chunk), and progress by one notification: listeners use them to wake
  up and re-read the job. Subscribers see the notifications only after the
  whole script, so the order of writes inside it is invisible.
]]
--@include job
begin()

local JOBS = tonumber(ARGV[7]) or 0
local DEDUPE_WINDOW_MS = tonumber(ARGV[8])
local LOG_MAX_BYTES = tonumber(ARGV[9])
local E = cjson.decode(ARGV[10])
-- fields of an event by kind (kind, attempt, id, source, type and its own)
local WIDTH = { log = 7, heartbeat = 7, accepted = 8, finished = 10, canceled = 7 }
local DEDUPE_MAX = 256
local UNKNOWN = cjson.encode({ r = 'unknown_job' })

-- Deferred writes of the fast path, per job (set by apply_job).
local LOG_FIELDS -- HSET pairs for the current attempt's chunk hash
local NLOG -- chunks staged in LOG_FIELDS
local SEQ_MEMBERS, NSEQ -- ZADD score/member pairs of the seq ZSET, and how many
local STAGED -- seqs staged in LOG_FIELDS out of order (not yet visible to HEXISTS)
local STAGED_ATT -- attempt the staged chunks belong to
local D_LB -- log bytes stored since lB was written
local TOUCHED -- hb (and hd) to write: an executor was heard from
local LOG_NOTE -- seq of the last chunk stored since the last log notification
local PROGRESS -- the latest progress JSON not written yet
local DK_ADD, NDK -- ZADD score/member pairs of <job>:d, and how many
-- Dedupe keys in <job>:d (read with one ZMSCORE for the job's heartbeats in the
-- call), or remembered since.
local SEEN
local DN0 -- the job's applied-event count when it was loaded
local DN_W -- the count as the job hash holds it
-- The chunk index of attempt RUN_ATT (see docs/design.md): the stored chunks are
-- the run of consecutive seqs [RUN_LO, RUN_HI) and the members of the seq ZSET,
-- whose highest seq is ZMAX. The run is field 'r' of the chunk hash, "lo hi zmax":
-- chunks that arrive in order cost no ZSET entry, and no lookup to tell they are new.
local RUN_ATT, RUN_LO, RUN_HI, ZMAX

local BULK = 200 -- pairs per bulk command (keeps unpack well inside Lua's stack)

-- One wake-up for a run of stored chunks (listeners re-read the log from where
-- they are; seq is the last chunk stored). It may go out before the chunks are
-- written: nothing is seen before the script ends but the notifications' order.
local function note_logs()
  if LOG_NOTE then
    notify('log', LOG_NOTE)
    LOG_NOTE = nil
  end
end

local function run_value() return string.format('%d %d %d', RUN_LO, RUN_HI, ZMAX) end

-- Every staged chunk moved the run or ZMAX (of RUN_ATT, the staged chunks' attempt).
local function flush_logs()
  if NLOG > 0 then
    LOG_FIELDS[2 * NLOG + 1] = 'r'
    LOG_FIELDS[2 * NLOG + 2] = run_value()
    redis.call('HSET', klog(STAGED_ATT), unpack(LOG_FIELDS, 1, 2 * NLOG + 2))
    if NSEQ > 0 then redis.call('ZADD', kseq(STAGED_ATT), unpack(SEQ_MEMBERS, 1, 2 * NSEQ)) end
    LOG_FIELDS, SEQ_MEMBERS, NLOG, NSEQ, STAGED, STAGED_ATT = {}, {}, 0, 0, {}, nil
  end
  note_logs()
end

-- Everything deferred, written out; the job hash's fields in one command (lB is
-- written as S.lB: the stored value plus every chunk stored since). No state
-- changes between a deferred event and this, so hd moves as touch() moves it.
local function flush()
  flush_logs()
  local f = {}
  if PROGRESS then
    set_text('pg', PROGRESS, f)
    notify('progress')
    PROGRESS = nil
  end
  if NDK > 0 then
    redis.call('ZADD', KD, unpack(DK_ADD, 1, 2 * NDK))
    DK_ADD, NDK = {}, 0
  end
  if TOUCHED then
    f[#f + 1] = 'hb'
    f[#f + 1] = NOW
    if S.s == 'running' and S.th and S.th > 0 then
      S.hd = NOW + S.th
      f[#f + 1] = 'hd'
      f[#f + 1] = S.hd
    end
    TOUCHED = false
  end
  if D_LB ~= 0 then
    f[#f + 1] = 'lB'
    f[#f + 1] = S.lB
  end
  if S.dn ~= DN_W then
    f[#f + 1] = 'dn'
    f[#f + 1] = S.dn
    DN_W = S.dn
  end
  if #f > 0 then redis.call('HSET', KJ, unpack(f)) end
  D_LB = 0
end

-- Dedupe (see seen() in includes/job.lua): the dedupe keys of applied events
-- other than log chunks (which dedupe by seq). Every DEDUPE_TRIM_EVERY applied
-- events the set is trimmed to the window and DEDUPE_MAX entries (so it holds at
-- most DEDUPE_MAX + DEDUPE_TRIM_EVERY). dn counts the applied events; its last
-- three digits order the events of one millisecond.
-- Heartbeats are scored by their time, the other events (accepted, finished,
-- canceled: a few an attempt) by their time plus DEDUPE_KEPT, so the cap drops
-- heartbeats first: however many heartbeats follow, a replayed finished naming no
-- attempt stays a duplicate for the window and cannot end the next attempt.
-- (2^42 ms + any time before 2150 keeps three decimals exact in a double.)
local DEDUPE_TRIM_EVERY = 16
local DEDUPE_KEPT = 4398046511104
local function remember(dk, kind)
  S.dn = S.dn + 1
  SEEN[dk] = true
  local kept = kind ~= 'heartbeat' and DEDUPE_KEPT or 0
  redis.call('ZADD', KD, kept + NOW + (S.dn % 1000) / 1000, dk)
end
-- Like remember(), deferred to flush(): a transition reads <job>:d, so only
-- the fast path, which makes none, defers.
local function remember_deferred(dk)
  S.dn = S.dn + 1
  SEEN[dk] = true
  DK_ADD[2 * NDK + 1] = NOW + (S.dn % 1000) / 1000
  DK_ADD[2 * NDK + 2] = dk
  NDK = NDK + 1
  if NDK >= BULK then flush() end
end
-- After the job's last event (dn is written by flush()).
local function trim_dedupe()
  if math.floor(S.dn / DEDUPE_TRIM_EVERY) ~= math.floor(DN0 / DEDUPE_TRIM_EVERY) then
    redis.call('ZREMRANGEBYSCORE', KD, '-inf', '(' .. (NOW - DEDUPE_WINDOW_MS))
    redis.call('ZREMRANGEBYSCORE', KD, DEDUPE_KEPT, '(' .. (DEDUPE_KEPT + NOW - DEDUPE_WINDOW_MS))
    redis.call('ZREMRANGEBYRANK', KD, 0, -(DEDUPE_MAX + 1))
  end
  DN0 = S.dn
end

-- The executor is alive: heartbeat time, and the heartbeat deadline moves.
local function touch()
  redis.call('HSET', KJ, 'hb', NOW)
  if S.s == 'running' and S.th and S.th > 0 then
    S.hd = NOW + S.th
    redis.call('HSET', KJ, 'hd', S.hd)
  end
end

-- The index of the current attempt, read once per job and attempt in a call: the
-- run from field r, ZMAX from the ZSET itself (a log begun by an older version has
-- every chunk in the ZSET, and may have a zmax in r below some of them).
local function load_index()
  if RUN_ATT == S.a then return end
  RUN_ATT, RUN_LO, RUN_HI, ZMAX = S.a, 0, 0, -1
  local lo, hi = string.match(redis.call('HGET', klog(S.a), 'r') or '', '^(%d+) (%d+) ')
  if lo then RUN_LO, RUN_HI = tonumber(lo), tonumber(hi) end
  local top = redis.call('ZRANGE', kseq(S.a), -1, -1, 'WITHSCORES')
  if top[2] then ZMAX = tonumber(top[2]) end
end

-- Whether chunk n (seq: its text) of the current attempt is stored or staged: in
-- the run, or else in the ZSET, so not above ZMAX.
local function stored(n, seq)
  if n >= RUN_LO and n < RUN_HI then return true end
  if n > ZMAX then return false end
  return STAGED[seq] or redis.call('HEXISTS', klog(S.a), seq) == 1
end

-- Index chunk n, about to be stored: a chunk that continues the run (or starts it)
-- extends it over the chunks already stored after it; any other chunk, and every
-- late one, goes in the ZSET. Returns whether it does.
local function index_chunk(n, late)
  if not late and (RUN_LO == RUN_HI or n == RUN_HI) then
    if RUN_LO == RUN_HI then RUN_LO = n end
    RUN_HI = n + 1
    while RUN_HI <= ZMAX and stored(RUN_HI, string.format('%d', RUN_HI)) do RUN_HI = RUN_HI + 1 end
    return false
  end
  if n > ZMAX then ZMAX = n end
  return true
end

-- A chunk past the attempt's log limit is dropped and counted (lT, lTB). It is not
-- stored, but its seq is kept in the attempt's ZSET of dropped seqs as ranges
-- (member "lo hi", inclusive, scored by lo; a seq next to a range joins it): a
-- redelivery is a duplicate and counts once, and readers take it as arrived (no
-- gap), in whatever order the dropped chunks came. At most DROPPED_RANGES ranges are
-- kept (chunks dropped in order make one); a seq that would need another is counted
-- but not kept. Older versions kept one run of dropped seqs in field tR instead; a
-- seq inside it is a duplicate too.
local DROPPED_RANGES = 1000
local function dropped_range(member)
  local lo, hi = string.match(member, '^(%d+) (%d+)$')
  return tonumber(lo), tonumber(hi)
end
local function truncate(n, size)
  local lo, hi = string.match(redis.call('HGET', KJ, 'tR') or '', '^(%d+) (%d+)$')
  lo, hi = tonumber(lo), tonumber(hi)
  if lo and n >= lo and n < hi then return 'duplicate' end
  local key = kdropped(S.a)
  local before = redis.call('ZRANGE', key, n, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1)[1]
  local after = redis.call('ZRANGE', key, n + 1, n + 1, 'BYSCORE', 'LIMIT', 0, 1)[1]
  local from, to = n, n
  if before then
    local blo, bhi = dropped_range(before)
    if n <= bhi then return 'duplicate' end
    if bhi == n - 1 then
      redis.call('ZREM', key, before)
      from = blo
    end
  end
  if after then
    redis.call('ZREM', key, after)
    local _, ahi = dropped_range(after)
    to = ahi
  end
  if from < n or to > n or redis.call('ZCARD', key) < DROPPED_RANGES then
    redis.call('ZADD', key, from, from .. ' ' .. to)
  end
  if not S.tF or n < S.tF then
    S.tF = n
    redis.call('HSET', KJ, 'tF', n)
  end
  redis.call('HINCRBY', KJ, 'lT', 1)
  redis.call('HINCRBY', KJ, 'lTB', size)
  return 'truncated'
end

-- Store a log chunk of the current attempt; late chunks are flagged.
local function store_log(seq, data, late, deferred)
  if deferred and STAGED_ATT and STAGED_ATT ~= S.a then flush_logs() end
  load_index()
  local n = tonumber(seq)
  if stored(n, seq) then return 'duplicate' end
  local size = #data
  -- past the limit, and every chunk after the first one dropped (tF): no text is
  -- spliced over a hole; a hole before it may still fill
  if (S.tF and n > S.tF) or S.lB + size > LOG_MAX_BYTES then return truncate(n, size) end
  local member = seq
  if late then member = seq .. ':L' end
  S.lB = S.lB + size
  local in_zset = index_chunk(n, late)
  if deferred then
    if in_zset then STAGED[seq] = true end
    STAGED_ATT = S.a
    local at = 2 * NLOG
    LOG_FIELDS[at + 1] = seq
    LOG_FIELDS[at + 2] = data
    NLOG = NLOG + 1
    if in_zset then
      SEQ_MEMBERS[2 * NSEQ + 1] = seq
      SEQ_MEMBERS[2 * NSEQ + 2] = member
      NSEQ = NSEQ + 1
    end
    D_LB = D_LB + size
    LOG_NOTE = seq
    if NLOG >= BULK then flush_logs() end
    return 'stored'
  end
  redis.call('HSET', klog(S.a), seq, data, 'r', run_value())
  if in_zset then redis.call('ZADD', kseq(S.a), seq, member) end
  redis.call('HINCRBY', KJ, 'lB', size)
  notify('log', seq)
  return 'stored'
end

-- Log chunks dedupe by seq within their attempt. A chunk naming no attempt is
-- taken for the current one, so a replay of an attempt's chunks after a retry began
-- the next (a crash before the batch that ended it was committed) would land in the
-- next attempt, and accept it. So while another attempt may follow (rm: the last one
-- the retry policy allows), such a chunk's dedupe key is kept in hash <job>:k with
-- its attempt; in a later attempt, a chunk naming no attempt whose key an earlier
-- attempt kept is that attempt's, replayed. Bounded by the log itself (no cap to
-- outrun); it expires once the job ended and late chunks are no longer stored.
-- Jobs that cannot retry pay nothing.
local LOG_KEYS -- event index -> its key, computed once per call
local function log_key(A)
  if E[A + 1] ~= '' or not (S.a > 1 or (S.rm and S.a < S.rm)) then return nil end
  local dk = LOG_KEYS[A]
  if not dk then
    dk = string.sub(redis.sha1hex(E[A + 3] .. '\0' .. E[A + 2]), 1, 16)
    LOG_KEYS[A] = dk
  end
  return dk
end
-- Whether the chunk with key dk was an earlier attempt's.
local function replayed_log(dk)
  if not dk or S.a < 2 then return false end
  local a = tonumber(redis.call('HGET', KJ .. ':k', dk))
  return a ~= nil and a < S.a
end
local function remember_log(dk)
  if dk and S.rm and S.a < S.rm then redis.call('HSET', KJ .. ':k', dk, S.a) end
end

-- Which of the heartbeats' dedupe keys among a job's n events (from E[first]) are
-- remembered: one ZMSCORE rather than a command per heartbeat.
local function prefetch(first, n)
  SEEN = {}
  LOG_KEYS = {}
  if TERMINAL[S.s] then return end
  local dks = {}
  local at = first
  for _ = 1, n do
    local kind = E[at]
    if kind == 'heartbeat' then dks[#dks + 1] = E[at + 5] end
    at = at + WIDTH[kind]
  end
  for i = 1, #dks, BULK do
    local got = redis.call('ZMSCORE', KD, unpack(dks, i, math.min(#dks, i + BULK - 1)))
    for k = 1, #got do
      if got[k] then SEEN[dks[i + k - 1]] = true end
    end
  end
end

-- A job created without an executor is the executor's that accepted it (its
-- `executor`): listed under it from then on, and under that of a retry's accept
-- rather than the earlier one's. retention.lua removes the entry.
local function index_accepted_by(executor)
  local before = accepted_executor()
  if before and before ~= executor then redis.call('ZREM', P .. ':idx:ex:' .. before, ID) end
  redis.call('ZADD', P .. ':idx:ex:' .. executor, S.c, ID)
end

-- For an event at A that reports more than the bare 'applied': a reply of its own,
-- and its cause as history and outbox records keep it.
local function begin_event(A)
  load_cold()
  OUT = { tr = {}, arm = {}, dis = {} }
  CAUSE = cjson.encode({ 'e', E[A + 2], E[A + 3], E[A + 4] })
end

-- One event; A is the index of its first field in E. Returns its reply.
local function apply_one(A)
  local KIND = E[A]
  -- no attempt named during a retry's backoff: the attempt that just ended (stale)
  local ATT = E[A + 1] -- a number, or '' (tonumber('') would parse it)
  if ATT == '' then
    ATT = S.a
    if S.bd then
      ATT = S.a - 1
    elseif S.a > 1 and TERMINAL[S.s] then
      -- ended before its current attempt was accepted (canceled in a retry's
      -- backoff, say): that attempt never ran, the events are the one before's
      load_cold()
      if not S.ac then ATT = S.a - 1 end
    end
  end
  local DK, a1, a2, a3, a4
  if KIND == 'log' then
    a1, a2 = E[A + 5], E[A + 6]
    if type(a2) == 'number' then a2 = ARGV[10 + a2] end
  else
    DK, a1, a2, a3, a4 = E[A + 5], E[A + 6], E[A + 7], E[A + 8], E[A + 9]
  end

  -- Fast path: log chunks and heartbeats of the current attempt of a live job.
  if ATT == S.a and (S.s == 'running' or S.s == 'canceling') then
    if KIND == 'log' then
      local dk = log_key(A)
      if replayed_log(dk) then
        begin_event(A)
        record('d', ATT)
        return result('duplicate', { log = 'duplicate' })
      end
      local stored = store_log(a1, a2, false, true)
      if stored == 'duplicate' then
        begin_event(A)
        record('d', ATT)
        return result('duplicate', { log = stored })
      end
      TOUCHED = true -- like touch(), deferred (see flush())
      remember_log(dk)
      return 'applied' -- stored or truncated: nothing else to report
    elseif KIND == 'heartbeat' then
      if SEEN[DK] then
        begin_event(A)
        record('d', ATT)
        return result('duplicate')
      end
      TOUCHED = true
      if a1 ~= '' then PROGRESS = a1 end
      remember_deferred(DK)
      return 'applied'
    end
  end

  begin_event(A)
  -- Everything else, with the deferred writes out first.
  flush()
  if ATT < S.a then
    record('s', ATT)
    return result('stale')
  end
  if ATT > S.a or (S.bd and ATT == S.a) then
    return result('invalid', { why = 'attempt ' .. ATT .. ' does not exist yet' })
  end

  if KIND ~= 'log' and seen(DK) then
    record('d', ATT)
    return result('duplicate')
  end
  local LK = KIND == 'log' and log_key(A) or nil
  if replayed_log(LK) then
    record('d', ATT)
    return result('duplicate', { log = 'duplicate' })
  end

  if TERMINAL[S.s] then
    if KIND == 'log' and S.f and NOW <= S.f + LATE_GRACE_MS then
      local stored = store_log(a1, a2, true, false)
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
  if KIND ~= 'log' then remember(DK, KIND) end

  -- finished, log or heartbeat on a pending job implies accepted (SPEC 5.4)
  if S.s == 'pending' and (KIND == 'accepted' or KIND == 'heartbeat' or KIND == 'log' or KIND == 'finished') then
    S.ac = NOW
    redis.call('HSET', KJ, 'ac', NOW)
    if KIND == 'accepted' then
      if a1 ~= '' then
        if not executor_of() then index_accepted_by(a1) end
        set_text('ax', a1)
      end
      if a2 ~= '' then set_text('du', a2) end
      transition('running')
    else
      transition('running', '{"implied":true}')
    end
    enter_running()
    if KIND == 'accepted' then return result('applied') end
  end

  local extra = nil
  if KIND == 'accepted' then
    -- already running or canceling (an implied accept came first, or it is sent
    -- again): nothing changes but the links and the executor it names
    if a1 ~= '' then
      if not executor_of() then index_accepted_by(a1) end
      set_text('ax', a1)
    end
    if a2 ~= '' then set_text('du', a2) end
    record('a', ATT, '{"noop":"accepted"}')
  elseif KIND == 'heartbeat' then
    touch()
    if a1 ~= '' then
      set_text('pg', a1)
      notify('progress')
    end
  elseif KIND == 'log' then
    local stored = store_log(a1, a2, false, false)
    extra = { log = stored }
    if stored == 'duplicate' then
      record('d', ATT)
      return result('duplicate', extra)
    end
    touch()
    remember_log(LK)
  elseif KIND == 'finished' then
    local code = tonumber(a1)
    redis.call('HSET', KJ, 'x', code)
    if a2 ~= '' then set_text('er', a2) end
    if a3 ~= '' then set_text('sm', a3) end
    if a4 ~= '' then redis.call('HSET', KJ, 'lm', a4) end
    if S.s == 'canceling' then
      transition('canceled', '{"exitCode":' .. code .. '}')
    elseif code == 0 and a2 == '' then
      transition('passed')
    else
      end_attempt('failed', nil, code, false)
    end
  else -- canceled (apply_job refused unknown kinds before any effect)
    if S.s == 'pending' or S.s == 'canceling' then
      transition('canceled')
    else
      -- running: the executor gave up without being asked; not retried
      set_text('er', cjson.encode({ type = 'canceled_by_executor', message = a1 }))
      transition('failed', '{"canceledByExecutor":true}')
    end
  end
  return result('applied', extra)
end

-- One job's events (its id at E[A], their count at A + 1, the events from A + 2);
-- returns its replies and where the next job starts. Events before a failing one
-- keep their effects (as separate calls would), so the deferred writes go out
-- before the error is raised.
local function apply_job(key, A)
  local n = tonumber(E[A + 1])
  local replies = {}
  local fast = 0 -- events answered with the bare 'applied'
  focus(E[A], key)
  A = A + 2
  local first = A
  local chunks_only = true -- only log chunks and heartbeats: the hot fields may do
  for i = 1, n do
    local kind = E[A]
    local width = WIDTH[kind]
    if not width then return error('EXTJOB_BAD_ARGUMENT unknown event kind ' .. tostring(kind)) end
    if kind ~= 'log' and kind ~= 'heartbeat' then chunks_only = false end
    A = A + width
  end
  if not load_job(chunks_only) then
    for i = 1, n do replies[i] = UNKNOWN end
    return replies, A
  end
  LOG_FIELDS, SEQ_MEMBERS, NLOG, NSEQ, STAGED, STAGED_ATT = {}, {}, 0, 0, {}, nil
  RUN_ATT = nil
  D_LB, TOUCHED, LOG_NOTE, PROGRESS = 0, false, nil, nil
  DK_ADD, NDK = {}, 0
  DN0, DN_W = S.dn, S.dn
  prefetch(first, n)
  local ok, err = pcall(function()
    local at = first
    for i = 1, n do
      local reply = apply_one(at)
      replies[i] = reply
      if reply == 'applied' then fast = fast + 1 end
      at = at + WIDTH[E[at]]
      -- a transition may have moved timers and per-attempt fields: reread them
      if reply ~= 'applied' and #OUT.tr > 0 and i < n then
        local dn = S.dn -- maybe not written yet (flush)
        load_job()
        S.dn = dn
      end
    end
  end)
  flush()
  trim_dedupe()
  if not ok then error(err) end
  if fast == n then return n, A end
  return replies, A
end

local ALL = {}
local A = 1
for j = 1, JOBS do
  ALL[j], A = apply_job(KEYS[j], A)
end
return ALL
