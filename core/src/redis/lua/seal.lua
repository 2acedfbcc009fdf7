-- Seals one minute of a partition: its open string (one `<video> <views>\n` line per batch and video) is
-- merged into the minute's packed blob of the same lines, one per video (about 11 bytes a video), which the
-- day window's tail keeps for 24 hours. A view applied to the minute later (a late entry) opens the string
-- again; readers always sum the two, so sealing is only compaction and never changes a count.
--
-- KEYS: 1 open-minute index, 2 the minute's open string, 3 its sealed blob
-- ARGV: 1 minute
-- Returns the number of videos in the sealed blob.
local counts = bucket_counts(KEYS[2], KEYS[3])
local lines, n = {}, 0
for video, views in pairs(counts) do
  n = n + 1
  lines[n] = video .. ' ' .. int(views) .. '\n'
end
if n > 0 then
  -- A minute the day window has retired already lingers under a TTL for the snapshotter: the blob keeps it.
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then
    redis.call('SET', KEYS[3], table.concat(lines), 'PX', ttl)
  else
    redis.call('SET', KEYS[3], table.concat(lines), 'KEEPTTL')
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return n
