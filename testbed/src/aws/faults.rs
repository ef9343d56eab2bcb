//! Scripted faults: per service, operation and optionally function; on the nth call, the next N calls,
//! every call, or with a seeded probability.

use serde::{Deserialize, Serialize};

/// A fault to inject. JSON for `POST /_testbed/faults`, e.g.
/// `{"operation": "UpdateFunctionCode", "function": "f1", "action": {"kind": "conflict"}, "when": {"nth": 2}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The credential scope's service. Every service takes `latency`, `connection_reset` and `timeout`; `s3` also
    /// `service_exception` and `slow_down`; the other actions are Lambda's.
    #[serde(default = "lambda")]
    pub service: String,
    /// Operation name (`GetFunction`, `GetObject`, ...) or `*` for every operation of the service.
    pub operation: String,
    /// Only calls about this function (short name), when set.
    #[serde(default)]
    pub function: Option<String>,
    /// Only calls acting in this account (the caller's, or its session's role's), when set.
    #[serde(default)]
    pub account: Option<String>,
    pub action: FaultAction,
    #[serde(default)]
    pub when: Trigger,
    /// Lambda only, with `service_exception`, `connection_reset` or `timeout`: the call is served (its effect on
    /// the function happens), then the client gets the fault instead of the real response. With `latency`: the
    /// call is served at once and its answer is slow (it tells the state of when the call arrived).
    #[serde(default)]
    pub after_apply: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// 429 TooManyRequestsException, as the quota would answer.
    Throttle,
    /// 409 ResourceConflictException ("An update is in progress ...").
    Conflict,
    /// 500 ServiceException (S3: 500 InternalError).
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
    /// Hold the connection `ms` without answering, then drop it (the client's own timeout normally fires first).
    Timeout { ms: u64 },
    /// S3's 503 SlowDown.
    SlowDown,
    /// Another writer changes the function just before this call is served, which then meets the real 409/412.
    CompetingWrite { change: CompetingChange },
    /// The update this UpdateFunctionCode/UpdateFunctionConfiguration call starts is accepted, then ends
    /// `LastUpdateStatus: Failed` with this reason, and the function's previous code and configuration return.
    UpdateFails { reason_code: LastUpdateStatusReasonCode, reason: String },
}

/// What a competing writer does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompetingChange {
    /// Someone edits the function in the console: a new Description, and an update InProgress for a drawn time.
    Configuration,
    /// Another deployer deploys the very code source the call names (UpdateFunctionCode only).
    SameCode,
}

impl CompetingChange {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CompetingChange::Configuration => "configuration",
            CompetingChange::SameCode => "same_code",
        }
    }
}

/// AWS's `LastUpdateStatusReasonCode` values a failed update can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LastUpdateStatusReasonCode {
    EniLimitExceeded,
    InsufficientRolePermissions,
    InvalidConfiguration,
    InternalError,
    SubnetOutOfIPAddresses,
    InvalidSubnet,
    InvalidSecurityGroup,
    ImageDeleted,
    ImageAccessDenied,
    InvalidImage,
    KMSKeyAccessDenied,
    KMSKeyNotFound,
    InvalidStateKMSKey,
    DisabledKMSKey,
    EFSIOError,
    EFSMountConnectivityError,
    EFSMountFailure,
    EFSMountTimeout,
    InvalidRuntime,
    InvalidZipFileException,
    FunctionError,
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

/// The Lambda operations that address one existing function (a competing writer needs one to change).
const ONE_FUNCTION: [&str; 15] = [
    "GetFunction",
    "GetFunctionConfiguration",
    "DeleteFunction",
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
    "PublishVersion",
    "ListVersionsByFunction",
    "CreateAlias",
    "ListAliases",
    "GetAlias",
    "UpdateAlias",
    "DeleteAlias",
    "TagResource",
    "UntagResource",
    "ListTags",
];

fn lambda() -> String {
    "lambda".into()
}

impl Fault {
    /// A Lambda fault on every call of `operation`.
    pub fn new(operation: &str, action: FaultAction) -> Fault {
        Fault {
            service: lambda(),
            operation: operation.into(),
            function: None,
            account: None,
            action,
            when: Trigger::Always,
            after_apply: false,
        }
    }

    pub fn service(mut self, service: &str) -> Fault {
        self.service = service.into();
        self
    }

    pub fn function(mut self, name: &str) -> Fault {
        self.function = Some(name.into());
        self
    }

    /// Only calls acting in `account`: one account throttled or failing while the others are not.
    pub fn in_account(mut self, account: &str) -> Fault {
        self.account = Some(account.into());
        self
    }

    pub fn when(mut self, when: Trigger) -> Fault {
        self.when = when;
        self
    }

    /// The call is served first; the fault then replaces its response.
    pub fn after_apply(mut self) -> Fault {
        self.after_apply = true;
        self
    }

    /// How the call log names the fault (the action's Debug form, e.g. `Throttle`, `Latency { ms: 300 }`).
    pub(crate) fn describe(&self) -> String {
        if self.after_apply { format!("{:?} after apply", self.action) } else { format!("{:?}", self.action) }
    }

    fn validate(&self) -> Result<(), String> {
        use FaultAction::*;
        let action = &self.action;
        let op = self.operation.as_str();
        let allowed = match self.service.as_str() {
            "lambda" => !matches!(action, SlowDown),
            "s3" => matches!(action, Latency { .. } | ConnectionReset | Timeout { .. } | ServiceException | SlowDown),
            // CloudWatch (`monitoring`): what judging a release meets when IAM denies it, or CloudWatch fails.
            "monitoring" => {
                matches!(
                    action,
                    Latency { .. } | ConnectionReset | Timeout { .. } | ServiceException | AccessDenied | Throttle
                )
            }
            _ => matches!(action, Latency { .. } | ConnectionReset | Timeout { .. }),
        };
        if !allowed {
            return Err(format!("service {} takes no {action:?} faults", self.service));
        }
        if self.after_apply
            && (self.service != "lambda"
                || !matches!(action, ServiceException | ConnectionReset | Timeout { .. } | Latency { .. }))
        {
            return Err("after_apply is for Lambda faults that answer instead of the service (service_exception, \
                        connection_reset, timeout) and for latency (a slow answer)"
                .into());
        }
        let starts_update = ["UpdateFunctionCode", "UpdateFunctionConfiguration", "*"].contains(&op);
        match action {
            InProgress { .. } | UpdateFails { .. } if !starts_update => {
                return Err(format!(
                    "{action:?} applies to UpdateFunctionCode and UpdateFunctionConfiguration, not {op}"
                ));
            }
            CompetingWrite { change: CompetingChange::SameCode } if op != "UpdateFunctionCode" => {
                return Err("competing_write same_code applies to UpdateFunctionCode".into());
            }
            CompetingWrite { .. } if !ONE_FUNCTION.contains(&op) => {
                return Err(format!("competing_write applies to operations that address one function, not {op}"));
            }
            _ => {}
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

    /// Every fault that fires for this call, in injection order.
    pub(crate) fn fire(
        &mut self,
        service: &str,
        operation: &str,
        function: Option<&str>,
        account: Option<&str>,
    ) -> Vec<Fault> {
        let mut fired = Vec::new();
        for a in &mut self.active {
            let f = &a.fault;
            let matches = f.service == service
                && (f.operation == "*" || f.operation == operation)
                && f.function.as_deref().is_none_or(|want| Some(want) == function)
                && f.account.as_deref().is_none_or(|want| Some(want) == account);
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
                fired.push(f.clone());
            }
        }
        fired
    }
}
