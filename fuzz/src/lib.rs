//! The fuzz target bodies. libFuzzer calls them from `fuzz_targets/`; `tests/fuzz_corpus_replay.rs` includes this
//! file and runs them over `fuzz/corpus/` on stable. A panic, here or in the deployer, is a finding: each body
//! asserts the documented contract, not just "no crash".

use lambda_deployer::Error;
use lambda_deployer::key::{KeyTemplate, validate_commit, validate_function_name};
use lambda_deployer::trigger::{Trigger, decode_json};

/// Generous bound on an error message: a few dozen quoted characters per named item, never the input itself.
const MAX_MESSAGE_BYTES: usize = 8 * 1024;
const VALID_FUNCTION: &str = "orders-api";
const VALID_COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

/// Any bytes as an invocation payload: a trigger, or a bounded non-retryable payload error.
pub fn decode_payload(data: &[u8]) {
    match decode_json(data) {
        Ok(Trigger::Artifacts(events)) => {
            let template = KeyTemplate::default();
            for event in events {
                // A key that names an artifact is exactly the key of that artifact: nothing else can match it.
                if let Ok(artifact) = template.parse_key(&event.key) {
                    assert_eq!(template.render(&artifact.function_name, &artifact.commit), event.key);
                }
            }
        }
        Ok(Trigger::Plan { namespace, name }) => {
            for scope in [namespace, name].into_iter().flatten() {
                assert!(!scope.is_empty() && !scope.contains('/'), "plan scope {scope:?} passed validation");
            }
        }
        Ok(Trigger::Sweep { .. }) => {}
        Ok(Trigger::Wakeups(wakeups)) => {
            for wakeup in wakeups {
                assert!(wakeup.due_at().is_some(), "due {:?} passed validation", wakeup.due);
                for scope in [&wakeup.namespace, &wakeup.name] {
                    assert!(!scope.is_empty() && !scope.contains('/'), "wake-up scope {scope:?} passed validation");
                }
            }
        }
        Err(error @ Error::Payload(_)) => {
            assert!(!error.is_retryable());
            assert!(error.to_string().len() <= MAX_MESSAGE_BYTES, "message of {} bytes", error.to_string().len());
        }
        Err(other) => panic!("decoding returned a non-payload error: {other:?}"),
    }
}

/// `template\nkey` (or just `key`, for the default template): a parse either names a valid artifact whose key
/// renders back identically, or says why not in a bounded message. Valid templates round-trip a valid artifact.
pub fn parse_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, key) = match text.split_once('\n') {
        Some((template, key)) => match KeyTemplate::parse(template) {
            Ok(template) => (template, key),
            Err(Error::Config { variable: "KEY_TEMPLATE", reason }) => {
                assert!(reason.len() <= MAX_MESSAGE_BYTES, "reason of {} bytes", reason.len());
                return;
            }
            Err(other) => panic!("template parsing returned a non-config error: {other:?}"),
        },
        None => (KeyTemplate::default(), text),
    };
    let rendered = template.render(VALID_FUNCTION, VALID_COMMIT);
    let round_trip = template.parse_key(&rendered).map(|a| (a.function_name, a.commit));
    assert_eq!(round_trip, Ok((VALID_FUNCTION.to_owned(), VALID_COMMIT.to_owned())), "template {template}");
    match template.parse_key(key) {
        Ok(artifact) => {
            assert_eq!(validate_function_name(&artifact.function_name), Ok(()));
            assert_eq!(validate_commit(&artifact.commit), Ok(()));
            assert_eq!(template.render(&artifact.function_name, &artifact.commit), key);
        }
        Err(mismatch) => {
            let reason = mismatch.to_string();
            assert!(!reason.is_empty() && reason.len() <= MAX_MESSAGE_BYTES, "reason of {} bytes", reason.len());
        }
    }
}
