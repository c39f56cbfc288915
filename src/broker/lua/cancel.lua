--[[
  cancel: an API caller asks to cancel a job.

  KEYS[1]  job hash <prefix>:job:{<id>}
  ARGV 1-6 common (see includes/job.lua); ARGV[6] is the API cause
  ARGV[7]  reason ('' = none)

  Returns a JSON object: r = canceled | canceling | unchanged | not_found, tr, arm.
  pending -> canceled at once, announced as job.cancel_requested too (an executor may
  have picked the job up from job.created) unless a retry's next attempt was not
  announced yet; running -> canceling (its outbox record also stands for
  job.cancel_requested) and the cancel grace timer (grace 0: canceled at once,
  forced); canceling or terminal: unchanged.
]]
--@include job
begin()

if not load_job() then return cjson.encode({ r = 'not_found' }) end

if S.s == 'pending' then
  transition('canceled', nil, nil, not S.bd and 'job.cancel_requested' or nil)
  return result('canceled')
end
if S.s ~= 'running' then return result('unchanged') end

transition('canceling', nil, nil, 'job.cancel_requested')
if S.tc <= 0 then
  redis.call('HSET', KJ, 'fo', 1)
  transition('canceled', '{"forced":true}')
  return result('canceled', { timeout = 'cancel_grace' })
end
S.cd = NOW + S.tc
redis.call('HSET', KJ, 'cd', S.cd)
arm('cancel_grace', S.cd)
return result('canceling')
