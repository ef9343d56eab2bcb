-- Argo CD health check for lambda-deployer.dev/LambdaDeployment (Argo CD runs it with gopher-lua: Lua 5.1).
-- Installed by gitops/argocd/argocd-cm-patch.yaml, which embeds this file verbatim (a test keeps them equal).
--
-- The deployer writes kstatus conditions (Ready, Reconciling, Stalled, each with observedGeneration), a phase and
-- a message. Conditions decide where they are present and current; the phase is the fallback:
--   not yet observed (no status, observedGeneration < generation)   -> Progressing
--   Stalled=True   (Failed, Blocked, RolledBack: a person must act)  -> Degraded
--   Ready=True     (Deployed)                                        -> Healthy
--   Suspended      (spec.suspend)                                    -> Suspended
--   Reconciling=True or Ready=False (WaitingForArtifact, Deploying,
--   Progressing: a canary release moving traffic)                    -> Progressing
-- Every field may be missing: nothing here indexes a value that is not a table.

local hs = {}

-- obj[k1][k2]... or nil as soon as a step is not a table.
local function get(value, ...)
  for _, key in ipairs({...}) do
    if type(value) ~= "table" then
      return nil
    end
    value = value[key]
  end
  return value
end

local function text(value)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return nil
end

local generation = get(obj, "metadata", "generation")
local status = get(obj, "status")
local observed = get(status, "observedGeneration")

local function waiting()
  if type(generation) == "number" then
    return "waiting for the deployer to observe generation " .. tostring(generation)
  end
  return "waiting for the deployer to observe this resource"
end

if type(status) ~= "table" then
  hs.status = "Progressing"
  hs.message = waiting()
  return hs
end
if type(observed) ~= "number" or (type(generation) == "number" and observed < generation) then
  hs.status = "Progressing"
  hs.message = waiting()
  return hs
end

-- A condition of this type written for the current generation, or nil.
local function condition(kind)
  local conditions = get(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      local at = c.observedGeneration
      if type(at) == "number" and type(generation) == "number" and at < generation then
        return nil
      end
      return c
    end
  end
  return nil
end

local function is(kind, value)
  local c = condition(kind)
  return c ~= nil and c.status == value
end

local phase = text(status.phase)
local ready = condition("Ready")
local ready_reason = ready and text(ready.reason)

-- The status message; else the deciding condition's message, its reason, or the phase.
local function message(c)
  return text(status.message) or (c and (text(c.message) or text(c.reason))) or phase or ""
end

local function progressing(c)
  local msg = message(c)
  local weight = get(status, "rollout", "weight")
  if (phase == "Progressing" or ready_reason == "Progressing") and type(weight) == "number" then
    local percent = tostring(weight) .. "%"
    if not string.find(msg, percent, 1, true) then
      msg = "release at " .. percent .. " of the traffic" .. (msg ~= "" and ": " .. msg or "")
    end
  end
  return msg
end

if is("Stalled", "True") then
  hs.status = "Degraded"
  hs.message = message(condition("Stalled"))
elseif is("Ready", "True") then
  hs.status = "Healthy"
  hs.message = message(ready)
elseif phase == "Suspended" or ready_reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = message(ready)
elseif is("Reconciling", "True") then
  hs.status = "Progressing"
  hs.message = progressing(condition("Reconciling"))
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Progressing"
  hs.message = progressing(ready)
-- No (current) conditions: an older deployer or a hand-written status. The phase says the same, less precisely.
elseif phase == "Deployed" then
  hs.status = "Healthy"
  hs.message = message(nil)
elseif phase == "Failed" or phase == "Blocked" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = message(nil)
elseif phase == "WaitingForArtifact" or phase == "Deploying" or phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = progressing(nil)
else
  hs.status = "Unknown"
  if phase then
    hs.message = "unknown phase " .. phase .. (text(status.message) and ": " .. status.message or "")
  else
    hs.message = text(status.message) or "the status has no phase and no conclusive condition"
  end
end
return hs
