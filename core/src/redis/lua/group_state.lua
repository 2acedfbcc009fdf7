-- Where the workers' consumer group stands on one partition's log, read in one step: a worker's XREADGROUP
-- cannot fall between the pending summary and the group's last delivered id (read apart, an entry delivered
-- in between looked neither pending nor undelivered, and a trim could delete it before it was applied).
--
-- KEYS[1] the log; ARGV[1] the group.
-- Returns {pending count, oldest pending id or nil, last delivered id, lag or nil, first id after the last
-- delivered one or nil}. A missing group is an error (NOGROUP), as from XPENDING itself.
local summary = redis.call('XPENDING', KEYS[1], ARGV[1])
local last, lag = '0-0', false
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #group, 2 do
    fields[group[i]] = group[i + 1]
  end
  if fields['name'] == ARGV[1] then
    last = fields['last-delivered-id']
    -- Redis reports no lag after deletions inside the unread range.
    lag = fields['lag'] or false
  end
end
local after = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
local first_after = false
if after[1] then
  first_after = after[1][1]
end
return {summary[1], summary[2] or false, last, lag, first_after}
