"""Lua scripts of the Redis store. Each runs atomically, on Redis's own clock (``TIME``).

All keys share one hash tag, so every script touches a single slot and also runs on Redis
Cluster. Events go to a stream whose entry ids are ``<index>-1``: the change index and the event
log can never disagree, and ``XRANGE``/``XREAD`` from an index is a range query.
"""

# Shared prologue: the time in milliseconds and an event writer.
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function emit(index_key, events_key, history, kind, field, instance, prev, reason)
  local idx = redis.call('INCR', index_key)
  redis.call('XADD', events_key, 'MAXLEN', history, idx .. '-1',
    'type', kind, 'field', field, 'at', now, 'instance', instance,
    'prev', prev, 'reason', reason)
  return idx
end
local function tombstoned(tomb_key, field)
  local until_ms = redis.call('ZSCORE', tomb_key, field)
  if not until_ms then return false end
  if tonumber(until_ms) > now then return tonumber(until_ms) - now end
  redis.call('ZREM', tomb_key, field)
  return false
end
"""

# KEYS: inst lease tomb index events svcset services
# ARGV: field json history service instance_id guard_owner
UPSERT = (
    _PROLOGUE
    + """
local gone = tombstoned(KEYS[3], ARGV[1])
if gone then return {'gone', tostring(gone)} end
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local existed = 0
local inst = cjson.decode(ARGV[2])
if previous then
  existed = 1
  local owner = cjson.decode(previous)['owner']
  if ARGV[6] == '1' and owner ~= inst['owner'] then return {'taken', owner} end
end
local ttl_ms = math.floor(tonumber(inst['ttl']) * 1000)
local payload = ARGV[2]
if tonumber(inst['status_since']) == 0 then
  inst['status_since'] = now / 1000
  payload = cjson.encode(inst)
end
redis.call('HSET', KEYS[1], ARGV[1], payload)
redis.call('ZADD', KEYS[2], now + ttl_ms, ARGV[1])
redis.call('SADD', KEYS[6], ARGV[5])
redis.call('SADD', KEYS[7], ARGV[4])
local kind = 'registered'
if existed == 1 then kind = 'updated' end
local idx = emit(KEYS[4], KEYS[5], ARGV[3], kind, ARGV[1], payload, '', '')
return {'ok', tostring(idx), kind, tostring(now), payload}
"""
)

# KEYS: inst lease tomb   ARGV: field
RENEW = (
    _PROLOGUE
    + """
local gone = tombstoned(KEYS[3], ARGV[1])
if gone then return {'gone', tostring(gone)} end
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return {'missing'} end
local ttl_ms = math.floor(tonumber(cjson.decode(json)['ttl']) * 1000)
redis.call('ZADD', KEYS[2], now + ttl_ms, ARGV[1])
return {'ok', json}
"""
)

# KEYS: inst index events lease
# ARGV: field status reason record_json_or_empty only_from_csv_or_empty history renew_lease
SET_STATUS = (
    _PROLOGUE
    + """
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return {'missing'} end
local inst = cjson.decode(json)
local prev = inst['status']
if ARGV[5] ~= '' and not string.find(',' .. ARGV[5] .. ',', ',' .. prev .. ',', 1, true) then
  return {'skipped'}
end
inst['status'] = ARGV[2]
if prev ~= ARGV[2] then inst['status_since'] = now / 1000 end
if ARGV[4] ~= '' then
  local record = cjson.decode(ARGV[4])
  for k, v in pairs(record) do inst[k] = v end
  -- a check is the checker vouching for the instance: its lease runs on
  if ARGV[7] == '1' then
    redis.call('ZADD', KEYS[4], now + math.floor(tonumber(inst['ttl']) * 1000), ARGV[1])
  end
end
local updated = cjson.encode(inst)
redis.call('HSET', KEYS[1], ARGV[1], updated)
if prev == ARGV[2] then return {'ok', updated, '0'} end
local idx = emit(KEYS[2], KEYS[3], ARGV[6], 'status_changed', ARGV[1], updated, prev, ARGV[3])
return {'ok', updated, tostring(idx), tostring(now), prev}
"""
)

# KEYS: inst lease tomb index events svcset services load
# ARGV: field instance_id service kind reason tombstone_ms history only_if_lapsed
REMOVE = (
    _PROLOGUE
    + """
if ARGV[8] == '1' then
  local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if (not deadline) or tonumber(deadline) > now then return {'kept'} end
end
if tonumber(ARGV[6]) > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[1])
end
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return {'missing'} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[2])
if redis.call('SCARD', KEYS[6]) == 0 then redis.call('SREM', KEYS[7], ARGV[3]) end
local prev = cjson.decode(json)['status']
local idx = emit(KEYS[4], KEYS[5], ARGV[7], ARGV[4], ARGV[1], '', prev, ARGV[5])
return {'ok', tostring(idx), prev, tostring(now)}
"""
)

# KEYS: lease   ARGV: limit
LAPSED = (
    _PROLOGUE
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# KEYS: index events   ARGV: kind field reason history
NOTE = (
    _PROLOGUE
    + """
local idx = emit(KEYS[1], KEYS[2], ARGV[4], ARGV[1], ARGV[2], '', '', ARGV[3])
return {tostring(idx), tostring(now)}
"""
)

# KEYS: nodes   ARGV: node_id ttl_ms
NODE_HEARTBEAT = (
    _PROLOGUE
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)

# KEYS: inst lease load services   ARGV: service set key prefix
# Every entry that points at an instance no longer stored, and every stored instance its
# service's set does not list: what a crash between two writes would leave (none: each change
# is one script), checked in one consistent pass.
ORPHANS = """
local out = {}
local inst = KEYS[1]
for _, f in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('HEXISTS', inst, f) == 0 then table.insert(out, 'lease ' .. f) end
end
for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
  if redis.call('HEXISTS', inst, f) == 0 then table.insert(out, 'load ' .. f) end
end
local listed = {}
for _, s in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local ids = redis.call('SMEMBERS', ARGV[1] .. s)
  if #ids == 0 then table.insert(out, 'service ' .. s) end
  for _, id in ipairs(ids) do
    local f = s .. '/' .. id
    listed[f] = true
    if redis.call('HEXISTS', inst, f) == 0 then table.insert(out, 'index ' .. f) end
  end
end
for _, f in ipairs(redis.call('HKEYS', inst)) do
  if not listed[f] then table.insert(out, 'unindexed ' .. f) end
end
return out
"""

# KEYS: inst load   ARGV: field json
PUT_LOAD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
