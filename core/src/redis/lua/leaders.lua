-- Leader sets, shared by the scripts that change a window (prepended to apply, retire and fill).
--
-- A window keeps its views per video in a hash (a field a video; ~56 bytes a video with the leader set) and,
-- beside it, a small sorted set of its leaders, which rankings read. Per window, with thresholds
-- enter <= complete:
--   1. every leader's score is its exact count, and that count is >= enter;
--   2. every video whose count is >= complete is a leader;
--   3. at least MIN leaders have a count >= complete, or complete = 1 (every video is a leader).
-- So the top K (K <= MIN) of the leader set is the partition's exact top K, ties included: every video counted
-- at or above the K-th score is a leader. MIN is a partition's share of the largest K with a margin, not the
-- whole K (LeaderCaps::for_partitions): the rankings merge the partitions' leaders, and rules 1 and 2 alone
-- make the merge exact wherever the K-th count merged is at or above every partition's `complete`; a partition
-- whose `complete` is above it has its hash read instead (ranking.rs, partitions_to_scan). Rule 3 only makes
-- that rare. Increments only ever add leaders. The leader set is trimmed back to KEEP
-- members once it passes MAX (the threshold rises to the KEEP-th count). A retirement that would break 3 is
-- refused until a refill has lowered the thresholds: enter drops to half of complete, HSCAN steps (fill.lua)
-- add every video counted >= enter, then complete = enter. No trim runs from the start of a refill until the
-- retirement that asked for it is done (`hold`), or a trim could raise the thresholds again and the retirement
-- would ask for a refill forever. The retirer runs refills, so retirements never interleave with one.

local function int(x)
  return string.format('%d', x)
end

-- The leader state of window `name`: its hash, leader set and thresholds; caps = {min, keep, max}.
local function leaders_open(state_key, name, hash, set, caps)
  local v = redis.call('HMGET', state_key, name .. ':enter', name .. ':complete', name .. ':fill',
    name .. ':hold')
  return {
    state = state_key, name = name, hash = hash, set = set, caps = caps,
    enter = tonumber(v[1]) or 1, complete = tonumber(v[2]) or 1, fill = v[3], hold = v[4],
  }
end

local function leaders_save(L)
  redis.call('HSET', L.state, L.name .. ':enter', int(L.enter), L.name .. ':complete', int(L.complete))
  if L.fill then
    redis.call('HSET', L.state, L.name .. ':fill', L.fill)
  else
    redis.call('HDEL', L.state, L.name .. ':fill')
  end
  if L.hold then
    redis.call('HSET', L.state, L.name .. ':hold', '1')
  else
    redis.call('HDEL', L.state, L.name .. ':hold')
  end
end

-- Field updates go in chunks: one HMGET and one HSET (or HDEL) of many fields instead of one HINCRBY per field.
-- From Lua a call costs several times the field update it makes, and a batch under load touches thousands of
-- fields. Chunks bound the arguments of one call (Lua's unpack is limited by its C stack).
-- Every (video, window) a batch or a slice touches runs the loops below once, so they are the scripts' hot path
-- (BENCHMARKS.md, "Where Redis time goes"): one pass per chunk builds the hash's and the leader set's arguments
-- together; a count read is turned into a number by arithmetic (`+`), not by a call to tonumber; and a new
-- count goes to HSET and ZADD as a Lua number, which Redis writes as the same integer text for less than Lua's
-- own string.format costs (a count is a double, exact up to 2^53 either way, and "%.17g" prints any such
-- integer in full). The two read loops below (add, slice) stay apart: a shared one would call a function per
-- video.
local CHUNK = 1000

-- A table video -> n as two arrays (the form the functions below take); `sign` -1 negates the counts.
local function as_arrays(by_video, sign)
  local videos, ns, k = {}, {}, 0
  for video, n in pairs(by_video) do
    k = k + 1
    videos[k], ns[k] = video, sign * n
  end
  return videos, ns
end

-- Adds views to a window: ns[j] new views (> 0) of videos[j] (videos distinct). Videos reaching `enter` get
-- their exact count in the leader set (rule 2 follows: complete >= enter).
local function leaders_add_all(L, videos, ns)
  local hash, set, enter = L.hash, L.set, L.enter
  for from = 1, #videos, CHUNK do
    local to = math.min(from + CHUNK - 1, #videos)
    local got = redis.call('HMGET', hash, unpack(videos, from, to))
    local fields, nf, lead, nl, k = {}, 0, {}, 0, 0
    for j = from, to do
      k = k + 1
      local c, video = (got[k] or 0) + ns[j], videos[j]
      nf = nf + 2
      fields[nf - 1], fields[nf] = video, c
      if c >= enter then
        nl = nl + 2
        lead[nl - 1], lead[nl] = c, video
      end
    end
    redis.call('HSET', hash, unpack(fields, 1, nf))
    if nl > 0 then redis.call('ZADD', set, unpack(lead, 1, nl)) end
  end
end

-- A slice to subtract from window L (by_video: video -> views, each at most the video's count): its videos and
-- negated views as arrays, and the videos' counts now, read once for both the check (leaders_hold_after) and
-- the subtraction (leaders_subtract_all). The same pass counts what the check needs: the videos that fall
-- below `complete` and those left with no views.
local function leaders_slice(L, by_video)
  local videos, ns = as_arrays(by_video, -1)
  local counts, complete, leaving, emptied = {}, L.complete, 0, 0
  for from = 1, #videos, CHUNK do
    local to = math.min(from + CHUNK - 1, #videos)
    local got = redis.call('HMGET', L.hash, unpack(videos, from, to))
    local k = 0
    for j = from, to do
      k = k + 1
      local c = (got[k] or 0) + 0
      local after = c + ns[j]
      counts[j] = c
      if c >= complete and after < complete then leaving = leaving + 1 end
      if c > 0 and after <= 0 then emptied = emptied + 1 end
    end
  end
  return {videos = videos, ns = ns, counts = counts, leaving = leaving, emptied = emptied}
end

-- Subtracts a slice (leaders_slice) from a window; a video left with none leaves the window, a leader that
-- falls below `enter` leaves the leader set.
local function leaders_subtract(L, slice)
  local videos, ns, counts = slice.videos, slice.ns, slice.counts
  local hash, set, enter = L.hash, L.set, L.enter
  for from = 1, #videos, CHUNK do
    local fields, nf, gone, ng, add, na, rem, nr = {}, 0, {}, 0, {}, 0, {}, 0
    for j = from, math.min(from + CHUNK - 1, #videos) do
      local was, video = counts[j], videos[j]
      local c = was + ns[j]
      if c > 0 then
        nf = nf + 2
        fields[nf - 1], fields[nf] = video, c
      else
        ng = ng + 1
        gone[ng] = video
      end
      -- enter >= 1, so a count at or above it is a count left.
      if c >= enter then
        na = na + 2
        add[na - 1], add[na] = c, video
      elseif was >= enter then
        nr = nr + 1
        rem[nr] = video
      end
    end
    if nf > 0 then redis.call('HSET', hash, unpack(fields, 1, nf)) end
    if ng > 0 then redis.call('HDEL', hash, unpack(gone, 1, ng)) end
    if na > 0 then redis.call('ZADD', set, unpack(add, 1, na)) end
    if nr > 0 then redis.call('ZREM', set, unpack(rem, 1, nr)) end
  end
end

-- Past MAX leaders, keeps the KEEP highest (and every tie of the last, unless that tie alone would keep the set
-- over MAX) and raises the thresholds to match.
-- Never from the start of a refill to the retirement that asked for it, so that the retirement always ends.
local function leaders_trim(L)
  if L.fill or L.hold or redis.call('ZCARD', L.set) <= L.caps[3] then return end
  local at = redis.call('ZRANGE', L.set, L.caps[2] - 1, L.caps[2] - 1, 'REV', 'WITHSCORES')
  local t = tonumber(at[2])
  -- Counts are small integers in a young or long-tailed window, so thousands of videos may tie at the KEEP-th
  -- count: keeping the tie would leave the set over MAX and trim again on every call. Drop the whole tie (the
  -- threshold moves one above it) whenever MIN leaders stay above it.
  if redis.call('ZCOUNT', L.set, int(t), '+inf') > L.caps[3]
      and redis.call('ZCOUNT', L.set, '(' .. int(t), '+inf') >= L.caps[1] then
    t = t + 1
  end
  if t <= L.enter then return end
  redis.call('ZREMRANGEBYSCORE', L.set, '-inf', '(' .. int(t))
  L.enter, L.complete = t, t
  leaders_save(L)
end

-- Whether rule 3 can hold once the slice (leaders_slice) is subtracted: MIN leaders stay >= complete, or every
-- video left does (then leaders_subtract_all drops the thresholds to 1).
local function leaders_hold_after(L, slice)
  if L.complete <= 1 then return true end
  local above = redis.call('ZCOUNT', L.set, int(L.complete), '+inf') - slice.leaving
  local videos = redis.call('HLEN', L.hash) - slice.emptied
  return above >= L.caps[1] or above >= videos
end

-- Subtracts a slice that leaders_hold_after accepted. With fewer than MIN leaders left, every video left is one,
-- and thresholds of 1 keep it so for videos that arrive later.
local function leaders_subtract_all(L, slice)
  leaders_subtract(L, slice)
  if L.complete > 1 and redis.call('ZCOUNT', L.set, int(L.complete), '+inf') < L.caps[1] then
    L.enter, L.complete = 1, 1
  end
  L.hold = false
  leaders_save(L)
end

-- Starts a refill: lower enter now; fill.lua's HSCAN steps add the videos between the two thresholds.
local function leaders_start_fill(L)
  L.enter = math.max(1, math.floor(L.complete / 2))
  L.fill, L.hold = '0', true
  leaders_save(L)
end

-- One HSCAN step of a refill. Returns true once the refill is over. `restart` scans from the start again: a
-- cursor saved before Redis restarted (a new hash seed) could skip videos, and scanning twice is harmless.
local function leaders_fill_step(L, count, restart)
  if not L.fill then return true end
  if restart then L.fill = '0' end
  local r = redis.call('HSCAN', L.hash, L.fill, 'COUNT', count)
  local items, args, n = r[2], {}, 0
  for j = 1, #items, 2 do
    -- The hash's count is already an integer string: ZADD takes it as it is.
    if items[j + 1] + 0 >= L.enter then
      n = n + 2
      args[n - 1], args[n] = items[j + 1], items[j]
    end
  end
  for from = 1, n, 2 * CHUNK do
    redis.call('ZADD', L.set, unpack(args, from, math.min(from + 2 * CHUNK - 1, n)))
  end
  if r[1] == '0' then
    L.complete, L.fill = L.enter, false
  else
    L.fill = r[1]
  end
  leaders_save(L)
  return not L.fill
end

-- Adds the `<video> <views>\n` lines of `blob` (a video may have several) to the table video -> views.
local function add_lines(counts, blob)
  for video, n in string.gmatch(blob, '(%S+) (%d+)\n') do
    counts[video] = (counts[video] or 0) + n
  end
end

-- Reads a bucket into a table video -> views: its open string, which apply.lua appends lines to, one per
-- (batch, video), and for minutes the sealed blob seal.lua compacted them into (one line per video).
local function bucket_counts(open, sealed)
  local counts = {}
  local blob = redis.call('GET', open)
  if blob then add_lines(counts, blob) end
  if sealed then
    blob = redis.call('GET', sealed)
    if blob then add_lines(counts, blob) end
  end
  return counts
end
