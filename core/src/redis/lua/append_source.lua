-- Appends records of one source partition (a Kafka topic's partition) to one topk partition's log, each record
-- once: the last source offset forwarded to this log is kept beside it (a hash field per source partition),
-- records at or below it are dropped, and it moves to the highest offset appended, in the same script. So a
-- consumer that replays from an older committed offset after a crash, or two consumers that briefly own the
-- same source partition, append every record once.
--
-- Consecutive records of one 5-second slice go into one entry, whose event time (ARGV[4]'s field) is the first
-- record's: a worker aggregates by slice, so any time of the slice counts the same.
--
-- KEYS: 1 the log, 2 the partition's source offsets (a hash).
-- ARGV: 1 the source partition (`topic/partition`), 2 the entries' id ('*', or '<ms>-*' for tests that inject
--       time), 3 the lines field, 4 the event time field, 5 '1' when the caller will wait for replicas, then
--       per record in offset order: its offset, its event time (ms), its `<video id> <count>` lines for this
--       partition.
-- Returns {entries written, records appended, the last offset forwarded (-1: none yet)}, followed when ARGV[5]
-- is '1' by this primary's replication ID: the caller waits for its replicas before it commits the offsets,
-- even when every record was dropped (the write that took them may not be on a replica yet).
--
-- Offsets and times stay strings (as given) wherever they are stored: Lua's numbers would print large ones in
-- exponent notation.
local log, offsets, source = KEYS[1], KEYS[2], ARGV[1]
local last_raw = redis.call('HGET', offsets, source)
local last = last_raw and tonumber(last_raw) or -1
local entries, appended = 0, 0
local slice, t, lines = nil, nil, {}
local function flush()
  if slice then
    redis.call('XADD', log, ARGV[2], ARGV[3], table.concat(lines), ARGV[4], t)
    entries = entries + 1
  end
end
for i = 6, #ARGV - 2, 3 do
  local offset = tonumber(ARGV[i])
  if offset > last then
    local s = math.floor(tonumber(ARGV[i + 1]) / 5000)
    if s ~= slice then
      flush()
      slice, t, lines = s, ARGV[i + 1], {}
    end
    lines[#lines + 1] = ARGV[i + 2]
    last, last_raw = offset, ARGV[i]
    appended = appended + 1
  end
end
flush()
if appended > 0 then
  redis.call('HSET', offsets, source, last_raw)
end
if ARGV[5] == '1' then
  return {entries, appended, last_raw or '-1', string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')}
end
return {entries, appended, last_raw or '-1'}
