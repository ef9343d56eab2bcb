//! Scripted faults: per service, operation and optionally function; on the nth call, the next N calls,
//! every call, or with a seeded probability.

use serde::{Deserialize, Serialize};

/// A fault to inject. JSON for `POST /_testbed/faults`, e.g.
/// `{"operation": "UpdateFunctionCode", "function": "f1", "action": {"kind": "conflict"}, "when": {"nth": 2}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The credential scope's service; faults other than `latency` and `connection_reset` apply to `lambda` only.
    #[serde(default = "lambda")]
    pub service: String,
    /// Operation name (`GetFunction`, `GetObject`, ...) or `*` for every operation of the service.
    pub operation: String,
    /// Only calls about this function (short name), when set.
    #[serde(default)]
    pub function: Option<String>,
    pub action: FaultAction,
    #[serde(default)]
    pub when: Trigger,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// 429 TooManyRequestsException, as the quota would answer.
    Throttle,
    /// 409 ResourceConflictException ("An update is in progress ...").
    Conflict,
    /// 500 ServiceException.
    ServiceException,
    /// 403 AccessDeniedException, as IAM answers an action the caller's policy does not allow.
    AccessDenied,
    /// Close the connection without a response.
    ConnectionReset,
    /// Delay the call, then serve it normally.
    Latency { ms: u64 },
    /// 412 PreconditionFailedException, as if another writer had changed the function first.
    StaleRevision,
    /// The update this UpdateFunctionCode/UpdateFunctionConfiguration call starts stays InProgress for `ms`.
    InProgress { ms: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Always,
    /// Only the nth matching call after injection (1-based).
    Nth(u64),
    /// Each of the next N matching calls.
    Next(u64),
    /// Each matching call with probability `p`, from a generator seeded with `seed` (reproducible).
    Probability { p: f64, seed: u64 },
}

fn lambda() -> String {
    "lambda".into()
}

impl Fault {
    /// A Lambda fault on every call of `operation`.
    pub fn new(operation: &str, action: FaultAction) -> Fault {
        Fault { service: lambda(), operation: operation.into(), function: None, action, when: Trigger::Always }
    }

    pub fn service(mut self, service: &str) -> Fault {
        self.service = service.into();
        self
    }

    pub fn function(mut self, name: &str) -> Fault {
        self.function = Some(name.into());
        self
    }

    pub fn when(mut self, when: Trigger) -> Fault {
        self.when = when;
        self
    }

    fn validate(&self) -> Result<(), String> {
        let protocol_neutral = matches!(self.action, FaultAction::Latency { .. } | FaultAction::ConnectionReset);
        if self.service != "lambda" && !protocol_neutral {
            return Err(format!("{:?} faults exist for service lambda only", self.action));
        }
        if let FaultAction::InProgress { .. } = self.action
            && !["UpdateFunctionCode", "UpdateFunctionConfiguration", "*"].contains(&self.operation.as_str())
        {
            return Err("in_progress applies to UpdateFunctionCode and UpdateFunctionConfiguration".into());
        }
        match self.when {
            Trigger::Nth(0) => Err("nth is 1-based".into()),
            Trigger::Probability { p, .. } if !(0.0..=1.0).contains(&p) => Err("p must be within [0, 1]".into()),
            _ => Ok(()),
        }
    }
}

struct Active {
    fault: Fault,
    matched: u64,
    rng: fastrand::Rng,
}

#[derive(Default)]
pub(crate) struct FaultSet {
    active: Vec<Active>,
}

impl FaultSet {
    pub(crate) fn inject(&mut self, fault: Fault) -> Result<(), String> {
        fault.validate()?;
        let seed = match fault.when {
            Trigger::Probability { seed, .. } => seed,
            _ => 0,
        };
        self.active.push(Active { fault, matched: 0, rng: fastrand::Rng::with_seed(seed) });
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.active.clear();
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.active.iter().map(|a| a.fault.clone()).collect()
    }

    /// The actions of every fault that fires for this call, in injection order.
    pub(crate) fn fire(&mut self, service: &str, operation: &str, function: Option<&str>) -> Vec<FaultAction> {
        let mut fired = Vec::new();
        for a in &mut self.active {
            let f = &a.fault;
            let matches = f.service == service
                && (f.operation == "*" || f.operation == operation)
                && f.function.as_deref().is_none_or(|want| Some(want) == function);
            if !matches {
                continue;
            }
            a.matched += 1;
            let fires = match f.when {
                Trigger::Always => true,
                Trigger::Nth(n) => a.matched == n,
                Trigger::Next(n) => a.matched <= n,
                Trigger::Probability { p, .. } => a.rng.f64() < p,
            };
            if fires {
                fired.push(f.action.clone());
            }
        }
        fired
    }
}
