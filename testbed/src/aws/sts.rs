//! STS as the layer serves it: GetCallerIdentity for the testbed identities and issued sessions, and AssumeRole as
//! AWS enforces it — the role must exist in its account and its trust policy must allow the caller (and name the
//! `sts:ExternalId` it requires); the credentials it issues act in the role's account until their `Expiration`.
//! Errors in the query protocol's XML shape.

use http::{HeaderValue, Method, Response, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::accounts::{Caller, Issued, Session, rfc3339};
use super::moto_client::{Body, full, xml_text};
use super::policy::{self, Ask};
use super::route::param;
use super::{Call, Shared};
use crate::identity::REGION;

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// AssumeRole's default session length, and the most role chaining allows.
const ONE_HOUR: i64 = 3_600;

fn xml_response(status: StatusCode, xml: String) -> Response<Body> {
    let mut response = Response::new(full(xml));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// `<ErrorResponse>` as the query protocol (STS, IAM, ...) answers.
pub(super) fn query_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
    let message = escape(message);
    let request_id = uuid::Uuid::new_v4();
    xml_response(
        status,
        format!(
            "<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn invalid_client_token() -> Response<Body> {
    query_error(StatusCode::FORBIDDEN, "InvalidClientTokenId", "The security token included in the request is invalid.")
}

fn validation(message: &str) -> Response<Body> {
    query_error(StatusCode::BAD_REQUEST, "ValidationError", message)
}

/// AWS's wording for a constraint of the API model.
fn constraint(value: Option<&str>, member: &str, rule: &str) -> String {
    let value = value.map_or("null".to_string(), |v| format!("'{v}'"));
    format!("1 validation error detected: Value {value} at '{member}' failed to satisfy constraint: {rule}")
}

/// GetCallerIdentity from the testbed identities and issued sessions (moto would answer "user/moto" whatever the
/// key).
pub(super) fn caller_identity(caller: &Caller) -> Response<Body> {
    if !caller.known {
        return invalid_client_token();
    }
    let request_id = uuid::Uuid::new_v4();
    xml_response(
        StatusCode::OK,
        format!(
            "<GetCallerIdentityResponse xmlns=\"{NAMESPACE}\"><GetCallerIdentityResult><Arn>{}</Arn>\
             <UserId>{}</UserId><Account>{}</Account></GetCallerIdentityResult><ResponseMetadata>\
             <RequestId>{request_id}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
            caller.arn, caller.user_id, caller.place.account
        ),
    )
}

/// The role an AssumeRole request names: its account and name (the ARN may carry a path).
fn role_of(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    let valid = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty();
    valid.then_some((account, name))
}

/// The characters AWS allows in a session name (`[\w+=,.@-]*`) and, with `:` and `/`, in an external id.
fn allowed(value: &str, extra: &str) -> bool {
    value.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) || extra.contains(c))
}

/// The checks of the API model: session name, external id, duration.
fn validate(session_name: Option<&str>, external_id: Option<&str>, duration: Option<&str>) -> Result<i64, String> {
    let Some(name) = session_name else {
        return Err(constraint(None, "roleSessionName", "Member must not be null"));
    };
    if name.len() < 2 {
        return Err(constraint(session_name, "roleSessionName", "Member must have length greater than or equal to 2"));
    }
    if name.len() > 64 {
        return Err(constraint(session_name, "roleSessionName", "Member must have length less than or equal to 64"));
    }
    if !allowed(name, "") {
        return Err(constraint(
            session_name,
            "roleSessionName",
            r"Member must satisfy regular expression pattern: [\w+=,.@-]*",
        ));
    }
    if let Some(id) = external_id {
        if id.len() < 2 {
            return Err(constraint(external_id, "externalId", "Member must have length greater than or equal to 2"));
        }
        if id.len() > 1224 {
            return Err(constraint(external_id, "externalId", "Member must have length less than or equal to 1224"));
        }
        if !allowed(id, ":/") {
            return Err(constraint(
                external_id,
                "externalId",
                r"Member must satisfy regular expression pattern: [\w+=,.@:\/-]*",
            ));
        }
    }
    let seconds = match duration {
        None => return Ok(ONE_HOUR),
        Some(d) => d.parse::<i64>().map_err(|_| format!("Invalid value for DurationSeconds: {d}"))?,
    };
    if seconds < 900 {
        return Err(constraint(duration, "durationSeconds", "Member must have value greater than or equal to 900"));
    }
    if seconds > 43_200 {
        return Err(constraint(duration, "durationSeconds", "Member must have value less than or equal to 43200"));
    }
    Ok(seconds)
}

/// The role as moto's IAM knows it.
struct Role {
    arn: String,
    id: String,
    trust: String,
    max_session_seconds: i64,
}

async fn get_role(shared: &Shared, account: &str, name: &str) -> Option<Role> {
    let form = format!("Action=GetRole&Version=2010-05-08&RoleName={}", utf8_percent_encode(name, NON_ALPHANUMERIC));
    let moto = shared.moto.at(account, REGION);
    let (status, body) =
        moto.call("iam", Method::POST, "/", Some("application/x-www-form-urlencoded"), form).await.ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let xml = String::from_utf8_lossy(&body);
    // GetRole returns the trust policy URL-encoded, as IAM does.
    let trust = percent_decode_str(xml_text(&xml, "AssumeRolePolicyDocument")?).decode_utf8_lossy().into_owned();
    Some(Role {
        arn: xml_text(&xml, "Arn")?.to_string(),
        id: xml_text(&xml, "RoleId")?.to_string(),
        trust,
        max_session_seconds: xml_text(&xml, "MaxSessionDuration").and_then(|s| s.parse().ok()).unwrap_or(ONE_HOUR),
    })
}

/// A random string of `len` characters from `alphabet`.
fn random(alphabet: &[u8], len: usize) -> String {
    (0..len).map(|_| alphabet[fastrand::usize(..alphabet.len())] as char).collect()
}

/// AssumeRole: validated as the API model does, then refused (403 AccessDenied, whether the role is missing or
/// does not trust the caller, as AWS does not tell them apart) unless the role's trust policy allows the caller.
pub(super) async fn assume_role(
    shared: &Shared,
    caller: &Caller,
    form: &[(String, String)],
    call: &mut Call,
) -> Response<Body> {
    let role_arn = param(form, "RoleArn");
    let session_name = param(form, "RoleSessionName");
    let external_id = param(form, "ExternalId");
    for (key, value) in [("RoleArn", role_arn), ("RoleSessionName", session_name), ("ExternalId", external_id)] {
        if let Some(value) = value {
            call.params.insert(key.into(), value.to_string());
        }
    }
    if let Some(d) = param(form, "DurationSeconds") {
        call.params.insert("DurationSeconds".into(), d.to_string());
    }
    if !caller.known {
        return invalid_client_token();
    }
    let Some(role_arn) = role_arn else {
        return validation(&constraint(None, "roleArn", "Member must not be null"));
    };
    if role_arn.len() < 20 {
        let rule = "Member must have length greater than or equal to 20";
        return validation(&constraint(Some(role_arn), "roleArn", rule));
    }
    let seconds = match validate(session_name, external_id, param(form, "DurationSeconds")) {
        Ok(seconds) => seconds,
        Err(message) => return validation(&message),
    };
    if caller.is_role_session() && seconds > ONE_HOUR {
        return validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        );
    }
    let denied = || {
        query_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!("User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}", caller.arn),
        )
    };
    let Some((account, role_name)) = role_of(role_arn) else {
        return denied();
    };
    let Some(role) = get_role(shared, account, role_name).await.filter(|r| r.arn == role_arn) else {
        return denied();
    };
    let session_name = session_name.unwrap_or_default();
    let mut context = vec![
        ("aws:principalaccount", caller.place.account.as_str()),
        ("aws:principalarn", caller.principal_arn.as_str()),
        ("sts:rolesessionname", session_name),
    ];
    context.extend(external_id.map(|id| ("sts:externalid", id)));
    let ask = Ask { principal: caller.principal(), action: "sts:AssumeRole", resource: None, context: &context };
    if !policy::allows(&role.trust, &ask) {
        return denied();
    }
    if seconds > role.max_session_seconds {
        return validation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.");
    }
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    let upper_digits = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let base64ish = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let issued = Issued {
        session: Session {
            access_key_id: format!("ASIA{}", random(upper_digits, 16)),
            account: account.to_string(),
            role_arn: role_arn.to_string(),
            session_name: session_name.to_string(),
            arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"),
            external_id: external_id.map(str::to_string),
            expiration: rfc3339(expires),
            expired: false,
        },
        secret_access_key: random(base64ish, 40),
        session_token: format!("IQoJb3JpZ2luX2VjE{}", random(base64ish, 300)),
        user_id: format!("{}:{session_name}", role.id),
        expires,
    };
    let request_id = uuid::Uuid::new_v4();
    let answer = format!(
        "<AssumeRoleResponse xmlns=\"{NAMESPACE}\"><AssumeRoleResult><AssumedRoleUser><AssumedRoleId>{}\
         </AssumedRoleId><Arn>{}</Arn></AssumedRoleUser><Credentials><AccessKeyId>{}</AccessKeyId>\
         <SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration>\
         </Credentials></AssumeRoleResult><ResponseMetadata><RequestId>{request_id}</RequestId>\
         </ResponseMetadata></AssumeRoleResponse>",
        issued.user_id,
        issued.session.arn,
        issued.session.access_key_id,
        issued.secret_access_key,
        issued.session_token,
        issued.session.expiration,
    );
    shared.accounts.issue(issued);
    xml_response(StatusCode::OK, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_arn_names_its_account_and_the_role_without_its_path() {
        assert_eq!(role_of("arn:aws:iam::210987654321:role/ci/deployer"), Some(("210987654321", "deployer")));
        assert_eq!(role_of("arn:aws:iam::210987654321:user/deployer"), None);
        assert_eq!(role_of("arn:aws:iam::2109:role/deployer"), None);
    }

    #[test]
    fn session_names_and_durations_are_checked_as_the_api_model_does() {
        assert_eq!(validate(Some("deployer@ci"), Some("ext:1/2"), None).ok(), Some(3_600));
        assert_eq!(
            validate(Some("s"), None, None).err().as_deref(),
            Some(
                "1 validation error detected: Value 's' at 'roleSessionName' failed to satisfy constraint: Member \
                 must have length greater than or equal to 2"
            )
        );
        assert!(validate(Some("has space"), None, None).is_err());
        assert!(validate(Some("ok"), Some("x"), None).is_err());
        assert!(validate(Some("ok"), None, Some("899")).is_err());
        assert_eq!(validate(Some("ok"), None, Some("43200")).ok(), Some(43_200));
    }
}
