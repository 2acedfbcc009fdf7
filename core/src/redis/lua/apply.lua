-- Applies one aggregated batch of a partition's log and acknowledges its entries, atomically.
-- Redis runs a script without interleaving other commands, so the counts and the XACK land together or not
-- at all: a worker killed before this call leaves the entries pending for another worker; after it, they are
-- acknowledged. Ownership is checked first, so a worker whose entries were claimed by another applies nothing.
--
-- KEYS: 1 log, 2 cursors, 3 leader state, 4-7 window hashes (minute, hour, day, all), 8-11 their leader sets,
--       12 slice5 index, 13 minute index, 14 open-minute index, 15 late views,
--       then per group g (from 0): 16+2g slice5 bucket, 17+2g minute bucket
-- ARGV: 1 group, 2 consumer, 3-5 leader caps (min, keep, max), 6 n ids, the ids, then n groups, then per
--       group: slice5, minute, its bucket lines (`<video id> <count>\n` per pair, built by the caller), n pairs,
--       then the pairs (video id, count)
-- Returns the number of views applied, or -1 when an entry is no longer this consumer's (nothing changed).
local log, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local caps = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local nids = tonumber(ARGV[6])
local first_id = 7
local last_id = first_id + nids - 1
-- Ownership, once per call: the consumer's pending entries over the batch's id range (the caller passes the
-- ids in ascending order) must be exactly the batch. A worker's batch is a run of its own pending list, so
-- one XPENDING answers; anything else (its list has other entries in the range) is checked id by id.
local function owned_one_by_one()
  for j = first_id, last_id do
    local pending = redis.call('XPENDING', log, group, ARGV[j], ARGV[j], 1)
    if #pending == 0 or pending[1][2] ~= consumer then
      return false
    end
  end
  return true
end
local pending = redis.call('XPENDING', log, group, ARGV[first_id], ARGV[last_id], nids, consumer)
local owned = #pending == nids
if owned then
  for k = 1, nids do
    if pending[k][1] ~= ARGV[first_id + k - 1] then
      owned = false
      break
    end
  end
end
if not owned and not owned_one_by_one() then
  return -1
end

-- The windows' retire cursors and the newest minute the snapshotter has closed (its bucket is being, or has
-- been, written to Postgres), in one read. Without a snapshot cursor no snapshotter runs on this partition, and
-- no late view is kept for one.
local cursors = redis.call('HMGET', KEYS[2], 'minute', 'hour', 'day', 'snapshot')
local function cursor(i)
  if cursors[i] then return tonumber(cursors[i]) end
  return -1
end
local cur_minute, cur_hour, cur_day = cursor(1), cursor(2), cursor(3)
local has_snapshot = cursors[4] ~= false
local cur_snapshot = cursor(4)
local names = {'minute', 'hour', 'day', 'all'}
local win = {}
for w = 1, 4 do
  win[w] = leaders_open(KEYS[3], names[w], KEYS[3 + w], KEYS[7 + w], caps)
end

local i = last_id + 1
local ngroups = tonumber(ARGV[i])
i = i + 1
local views = 0
-- Each group's videos and counts, and whether its slice is live in the minute, hour and day windows.
local groups = {}
for g = 0, ngroups - 1 do
  local s5_key, m_key = KEYS[16 + 2 * g], KEYS[17 + 2 * g]
  local s5, m, blob, npairs = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  -- A slice at or behind a window's cursor has been subtracted already: adding to it (or to its bucket)
  -- would never be undone, so the view counts only where its slice is still live.
  local live = {s5 > cur_minute, m > cur_hour, m > cur_day, true}
  -- History takes every view at its own minute. The minute's bucket serves the hour and day windows'
  -- retirement, so a view live in the day window goes there; the snapshotter writes a minute's bucket as it
  -- was when it closed the minute. A view for a minute closed already, or behind the day window (no bucket
  -- will be written for it), also goes to the late stream, from which the snapshotter adds it to the
  -- minute's row and to the totals.
  local late = has_snapshot and ((not live[3]) or m <= cur_snapshot)
  if live[1] then redis.call('ZADD', KEYS[12], s5, s5) end
  if live[3] then
    redis.call('ZADD', KEYS[13], m, m)
    redis.call('ZADD', KEYS[14], m, m)
  end
  -- A group's videos are distinct (the batch is aggregated per slice and video).
  local videos, ns = {}, {}
  for k = 1, npairs do
    local n = ARGV[i + 1] + 0
    videos[k], ns[k] = ARGV[i], n
    i = i + 2
    views = views + n
  end
  -- Buckets are append-only: one APPEND per group instead of reading and writing a field per video. The
  -- caller formats the lines, which costs Lua nothing.
  if live[1] then redis.call('APPEND', s5_key, blob) end
  if live[3] then redis.call('APPEND', m_key, blob) end
  if late then redis.call('XADD', KEYS[15], '*', 'minute', m, '#lines', blob) end
  groups[g + 1] = {videos = videos, ns = ns, live = live}
end

-- The views by video of the groups live in window w, as two arrays. Nearly every batch is one group, or groups
-- live in every window, so the sum is made once and shared by the windows (Lua's table work is a large part
-- of a call's cost).
local sums = {}
local function sum_for(w)
  local key = ''
  for g = 1, ngroups do key = key .. (groups[g].live[w] and '1' or '0') end
  if sums[key] then return sums[key][1], sums[key][2] end
  local videos, ns
  if key == '1' then
    videos, ns = groups[1].videos, groups[1].ns
  else
    local by_video = {}
    for g = 1, ngroups do
      if groups[g].live[w] then
        local gv, gn = groups[g].videos, groups[g].ns
        for k = 1, #gv do by_video[gv[k]] = (by_video[gv[k]] or 0) + gn[k] end
      end
    end
    videos, ns = as_arrays(by_video, 1)
  end
  sums[key] = {videos, ns}
  return videos, ns
end
for w = 1, 4 do
  local videos, ns = sum_for(w)
  if #videos > 0 then leaders_add_all(win[w], videos, ns) end
  leaders_trim(win[w])
end

-- XACK in chunks: Lua's unpack is bounded by its C stack.
for j = first_id, last_id, 1000 do
  redis.call('XACK', log, group, unpack(ARGV, j, math.min(j + 999, last_id)))
end
return views
