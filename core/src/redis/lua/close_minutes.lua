-- Closes a partition's minutes for the snapshotter, atomically: every minute with a bucket in (after,
-- through] gets a frozen copy of its bucket as it is now (sealed blob and open lines, `<video> <count>` lines
-- both), and the partition's snapshot cursor moves to `through`. From then on the apply script sends every view
-- for those minutes to the late stream as well, so what the snapshotter writes for a minute (its frozen copy)
-- and what it adds later (the late stream) never hold the same view. A frozen copy is never replaced: a run
-- that failed before its commit is redone from the same copies. A minute already closed (at or before the
-- snapshot cursor) without a frozen copy had no bucket when it was closed: whatever its bucket holds now came
-- after, and is in the late stream too, so it is not frozen (it would be written twice).
--
-- KEYS: 1 cursors, 2 minute index, then per minute listed by the caller: its open bucket, its sealed bucket,
--       its frozen copy.
-- ARGV: 1 after (exclusive), 2 through, 3 '1' when the caller will wait for replicas, then the minutes
-- listed, in the index's order.
-- Returns {the number of minutes closed, or -1 when the index holds other minutes in the range than those
-- listed (a worker added one since): the caller lists again}, followed, when ARGV[3] is '1', by this
-- primary's replication ID (the caller waits for the replicas of the very primary that moved the cursor).
local listed = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], ARGV[2])
if #listed ~= #ARGV - 3 then return {-1} end
for k = 1, #listed do
  if listed[k] ~= ARGV[3 + k] then return {-1} end
end
local cur = tonumber(redis.call('HGET', KEYS[1], 'snapshot') or '-1')
for k = 1, #listed do
  local open, sealed, frozen = KEYS[3 * k], KEYS[3 * k + 1], KEYS[3 * k + 2]
  if tonumber(listed[k]) > cur and redis.call('EXISTS', frozen) == 0 then
    redis.call('SET', frozen, (redis.call('GET', sealed) or '') .. (redis.call('GET', open) or ''))
  end
end
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], 'snapshot', ARGV[2]) end
if ARGV[3] == '1' then
  return {#listed, string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')}
end
return {#listed}
