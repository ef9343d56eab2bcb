//! Where an artifact lives in the bucket: the key template (`KEY_TEMPLATE`, default `{functionName}/{commit}.zip`)
//! renders a key from a function name and commit, and parses a key from an upload event back into them.
//!
//! Parsing is strict because keys come from anyone who can write to the bucket: a key only names an artifact
//! when both parts are valid on their own (Lambda-style name, lowercase hex commit), so `..`, `/`, spaces,
//! unicode look-alikes and over-long keys never reach a lookup.

use std::fmt;

use crate::Error;

pub const DEFAULT_KEY_TEMPLATE: &str = "{functionName}/{commit}.zip";

const FUNCTION_NAME: &str = "{functionName}";
const COMMIT: &str = "{commit}";
/// S3's limit on key length, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
const MAX_FUNCTION_NAME_CHARS: usize = 64;
const MIN_COMMIT_CHARS: usize = 7;
const MAX_COMMIT_CHARS: usize = 40;
/// Longest text quoted back in messages: enough to recognise a value, never a way to echo huge input.
const MAX_QUOTED_CHARS: usize = 64;

/// The (function name, commit) an artifact key names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArtifactRef {
    pub function_name: String,
    pub commit: String,
}

/// Why a key does not name an artifact. `Display` is a sentence for a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMismatch {
    /// Longer than S3 allows: cannot be a real object key.
    TooLong { bytes: usize },
    /// The literal text of the template is not where it should be.
    Shape { template: String },
    /// The `{functionName}` part is not a valid function name (the message says why).
    FunctionName(String),
    /// The `{commit}` part is not a valid commit (the message says why).
    Commit(String),
}

impl fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMismatch::TooLong { bytes } => {
                write!(f, "key is {bytes} bytes, longer than S3's {MAX_KEY_BYTES}-byte limit")
            }
            KeyMismatch::Shape { template } => write!(f, "key does not match the key template {template:?}"),
            KeyMismatch::FunctionName(reason) => write!(f, "key matches the template but {reason}"),
            KeyMismatch::Commit(reason) => write!(f, "key matches the template but {reason}"),
        }
    }
}

impl std::error::Error for KeyMismatch {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    FunctionName,
    Commit,
}

/// A parsed key template: `prefix {first} separator {second} suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    template: String,
    prefix: String,
    first: Placeholder,
    separator: String,
    suffix: String,
}

impl KeyTemplate {
    pub fn parse(template: &str) -> Result<KeyTemplate, Error> {
        let invalid = |reason: String| Error::config("KEY_TEMPLATE", reason);
        if template.len() + MAX_FUNCTION_NAME_CHARS + MAX_COMMIT_CHARS > MAX_KEY_BYTES {
            return Err(invalid(format!(
                "template is {} bytes: rendered keys could exceed S3's {MAX_KEY_BYTES}-byte limit",
                template.len()
            )));
        }
        if template.chars().any(char::is_control) {
            return Err(invalid(format!("template {} contains control characters", quoted(template))));
        }
        let position = |placeholder: &str| -> Result<usize, Error> {
            let mut found = template.match_indices(placeholder).map(|(at, _)| at);
            match (found.next(), found.next()) {
                (Some(at), None) => Ok(at),
                (None, _) => Err(invalid(format!("template {} lacks {placeholder}", quoted(template)))),
                (Some(_), Some(_)) => {
                    Err(invalid(format!("template {} has {placeholder} more than once", quoted(template))))
                }
            }
        };
        let function_at = position(FUNCTION_NAME)?;
        let commit_at = position(COMMIT)?;
        let (first, first_at, first_len, second_at, second_len) = if function_at < commit_at {
            (Placeholder::FunctionName, function_at, FUNCTION_NAME.len(), commit_at, COMMIT.len())
        } else {
            (Placeholder::Commit, commit_at, COMMIT.len(), function_at, FUNCTION_NAME.len())
        };
        let prefix = &template[..first_at];
        let separator = &template[first_at + first_len..second_at];
        let suffix = &template[second_at + second_len..];
        if let Some(literal) = [prefix, separator, suffix].into_iter().find(|l| l.contains(['{', '}'])) {
            return Err(invalid(format!(
                "template {} has braces in {} outside {FUNCTION_NAME} and {COMMIT} (the only placeholders)",
                quoted(template),
                quoted(literal)
            )));
        }
        // A commit is lowercase hex, so a separator with any other character can never occur inside the commit:
        // that makes the split point unique (see `parse_key`) and render/parse exact inverses.
        if !separator.chars().any(|c| !is_lower_hex(c)) {
            return Err(invalid(format!(
                "template {} needs text between {FUNCTION_NAME} and {COMMIT} containing a character that cannot be \
                 part of a commit (not 0-9a-f), e.g. \"/\"",
                quoted(template)
            )));
        }
        Ok(KeyTemplate {
            template: template.to_owned(),
            prefix: prefix.to_owned(),
            first,
            separator: separator.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The key of the artifact for this function and commit. Does not validate: callers render validated specs.
    pub fn render(&self, function_name: &str, commit: &str) -> String {
        let (first, second) = match self.first {
            Placeholder::FunctionName => (function_name, commit),
            Placeholder::Commit => (commit, function_name),
        };
        [self.prefix.as_str(), first, &self.separator, second, &self.suffix].concat()
    }

    /// Inverse of [`render`](Self::render): which function and commit a key names.
    pub fn parse_key(&self, key: &str) -> Result<ArtifactRef, KeyMismatch> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyMismatch::TooLong { bytes: key.len() });
        }
        let shape = || KeyMismatch::Shape { template: self.template.clone() };
        let middle =
            key.strip_prefix(&self.prefix).and_then(|rest| rest.strip_suffix(&self.suffix)).ok_or_else(shape)?;
        // The commit cannot contain the separator (checked in `parse`), so the separator next to the commit is the
        // last occurrence when the commit comes second and the first occurrence when it comes first.
        let (function_name, commit) = match self.first {
            Placeholder::FunctionName => middle.rsplit_once(self.separator.as_str()).ok_or_else(shape)?,
            Placeholder::Commit => {
                let (commit, function_name) = middle.split_once(self.separator.as_str()).ok_or_else(shape)?;
                (function_name, commit)
            }
        };
        validate_function_name(function_name).map_err(KeyMismatch::FunctionName)?;
        validate_commit(commit).map_err(KeyMismatch::Commit)?;
        Ok(ArtifactRef { function_name: function_name.to_owned(), commit: commit.to_owned() })
    }
}

impl Default for KeyTemplate {
    fn default() -> Self {
        KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).expect("the default key template is valid")
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

/// A Lambda-style function name: 1–64 of `A-Z a-z 0-9 - _`.
pub fn validate_function_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("function name is empty".into());
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!(
            "function name {} contains {bad:?}: only letters, digits, '-' and '_' are allowed",
            quoted(name)
        ));
    }
    if name.len() > MAX_FUNCTION_NAME_CHARS {
        return Err(format!(
            "function name {} is {} characters long, more than {MAX_FUNCTION_NAME_CHARS}",
            quoted(name),
            name.len()
        ));
    }
    Ok(())
}

/// A git commit id, full or abbreviated: 7–40 lowercase hex digits.
pub fn validate_commit(commit: &str) -> Result<(), String> {
    if let Some(bad) = commit.chars().find(|c| !is_lower_hex(*c)) {
        return Err(format!(
            "commit {} contains {bad:?}: only lowercase hex digits (0-9a-f) are allowed",
            quoted(commit)
        ));
    }
    let len = commit.len();
    if !(MIN_COMMIT_CHARS..=MAX_COMMIT_CHARS).contains(&len) {
        return Err(format!(
            "commit {} is {len} hex digits long; a commit is {MIN_COMMIT_CHARS} to {MAX_COMMIT_CHARS}",
            quoted(commit)
        ));
    }
    Ok(())
}

fn is_lower_hex(c: char) -> bool {
    c.is_ascii_digit() || ('a'..='f').contains(&c)
}

/// `text` as a quoted, escaped string for a message, cut after a few dozen characters (with its full size), so
/// hostile input can neither flood a log nor smuggle control characters into it.
pub(crate) fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

    fn template(text: &str) -> KeyTemplate {
        KeyTemplate::parse(text).unwrap_or_else(|e| panic!("{text} should parse: {e}"))
    }

    fn config_reason(text: &str) -> String {
        match KeyTemplate::parse(text) {
            Err(Error::Config { variable: "KEY_TEMPLATE", reason }) => reason,
            other => panic!("{text} should be a KEY_TEMPLATE config error, got {other:?}"),
        }
    }

    #[test]
    fn default_template_renders_function_slash_commit_zip() {
        assert_eq!(KeyTemplate::default().render("orders-api", SHA), format!("orders-api/{SHA}.zip"));
        assert_eq!(KeyTemplate::default().as_str(), DEFAULT_KEY_TEMPLATE);
    }

    #[test]
    fn rendered_keys_parse_back_to_the_same_function_and_commit() {
        let templates = [
            DEFAULT_KEY_TEMPLATE,
            "artifacts/{functionName}/{commit}/lambda.zip",
            "{commit}/{functionName}.zip",
            "{functionName}-{commit}.zip",
            "{commit}_{functionName}",
            "builds/{functionName}@{commit}",
        ];
        let names = ["f", "orders-api", "Orders_API-2", "a-b-c-d", &"x".repeat(64)];
        let commits = ["abcdef1", "0000000", SHA, "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"];
        for text in templates {
            let template = template(text);
            for name in names {
                for commit in commits {
                    let key = template.render(name, commit);
                    let parsed = template.parse_key(&key).unwrap_or_else(|e| panic!("{text}: {key}: {e}"));
                    assert_eq!(parsed, ArtifactRef { function_name: name.into(), commit: commit.into() }, "{key}");
                }
            }
        }
    }

    #[test]
    fn custom_template_with_prefix_and_suffix_extracts_both_parts() {
        let template = template("artifacts/{functionName}/{commit}/lambda.zip");
        assert_eq!(
            template.parse_key(&format!("artifacts/orders/{SHA}/lambda.zip")),
            Ok(ArtifactRef { function_name: "orders".into(), commit: SHA.into() })
        );
        assert_eq!(
            template.parse_key(&format!("orders/{SHA}.zip")),
            Err(KeyMismatch::Shape { template: "artifacts/{functionName}/{commit}/lambda.zip".into() })
        );
    }

    #[test]
    fn hyphen_separator_splits_at_the_last_hyphen_because_commits_have_none() {
        let parsed = template("{functionName}-{commit}.zip").parse_key("my-fn-abcdef1.zip").unwrap();
        assert_eq!(parsed, ArtifactRef { function_name: "my-fn".into(), commit: "abcdef1".into() });
    }

    #[test]
    fn keys_that_escape_the_function_part_are_rejected_with_the_reason() {
        let template = KeyTemplate::default();
        for key in ["../abcdef1.zip", "a/../abcdef1.zip", "team/orders/abcdef1.zip", "/abcdef1.zip"] {
            let err = template.parse_key(key).unwrap_err();
            assert!(matches!(err, KeyMismatch::FunctionName(_)), "{key}: {err}");
        }
        let err = template.parse_key("orders api/abcdef1.zip").unwrap_err();
        assert_eq!(
            err.to_string(),
            "key matches the template but function name \"orders api\" contains ' ': only letters, digits, '-' and \
             '_' are allowed"
        );
    }

    #[test]
    fn keys_with_a_non_hex_or_wrong_length_commit_are_rejected() {
        let template = KeyTemplate::default();
        for key in ["orders/ABCDEF1.zip", "orders/main.zip", "orders/abc123.zip", "orders/release-1.2.zip"] {
            let err = template.parse_key(key).unwrap_err();
            assert!(matches!(err, KeyMismatch::Commit(_)), "{key}: {err}");
        }
        let too_long = "a".repeat(41);
        assert!(template.parse_key(&format!("orders/{too_long}.zip")).unwrap_err().to_string().contains("41 hex"));
    }

    #[test]
    fn keys_of_other_shapes_name_the_template() {
        let template = KeyTemplate::default();
        for key in ["", "orders", "orders/abcdef1.tar.gz", "abcdef1.zip"] {
            assert_eq!(
                template.parse_key(key),
                Err(KeyMismatch::Shape { template: DEFAULT_KEY_TEMPLATE.into() }),
                "{key:?}"
            );
        }
    }

    #[test]
    fn keys_longer_than_s3_allows_are_rejected_before_any_parsing() {
        let key = format!("{}/{SHA}.zip", "a".repeat(1100));
        assert_eq!(KeyTemplate::default().parse_key(&key), Err(KeyMismatch::TooLong { bytes: key.len() }));
    }

    #[test]
    fn templates_without_exactly_one_of_each_placeholder_are_rejected() {
        assert!(config_reason("{functionName}.zip").contains("lacks {commit}"));
        assert!(config_reason("{commit}.zip").contains("lacks {functionName}"));
        assert!(config_reason("{functionName}/{commit}/{commit}.zip").contains("{commit} more than once"));
        assert!(config_reason("").contains("lacks {functionName}"));
    }

    #[test]
    fn templates_with_unknown_placeholders_are_rejected() {
        let reason = config_reason("{bucket}/{functionName}/{commit}.zip");
        assert!(reason.contains("braces in \"{bucket}/\""), "{reason}");
        assert!(config_reason("{functionName}/{commit}.zip}").contains("braces"));
    }

    #[test]
    fn templates_whose_parts_cannot_be_told_apart_are_rejected() {
        for text in ["{functionName}{commit}", "{functionName}a{commit}.zip", "{commit}0{functionName}"] {
            assert!(config_reason(text).contains("cannot be part of a commit"), "{text}");
        }
    }

    #[test]
    fn templates_with_control_characters_or_too_long_are_rejected() {
        assert!(config_reason("{functionName}\n{commit}").contains("control characters"));
        let long = format!("{}{{functionName}}/{{commit}}", "p".repeat(1000));
        assert!(config_reason(&long).contains("1024-byte limit"));
    }

    #[test]
    fn function_names_follow_lambda_rules() {
        assert_eq!(validate_function_name("Orders_api-2"), Ok(()));
        assert_eq!(validate_function_name(&"a".repeat(64)), Ok(()));
        assert_eq!(validate_function_name(""), Err("function name is empty".into()));
        assert!(validate_function_name(&"a".repeat(65)).unwrap_err().contains("65 characters long, more than 64"));
        assert!(validate_function_name("örders").unwrap_err().contains("contains 'ö'"));
        assert!(validate_function_name("arn:aws:lambda").unwrap_err().contains("contains ':'"));
    }

    #[test]
    fn commits_are_7_to_40_lowercase_hex_digits() {
        assert_eq!(validate_commit("abcdef1"), Ok(()));
        assert_eq!(validate_commit(SHA), Ok(()));
        assert!(validate_commit("abcdef").unwrap_err().contains("6 hex digits long"));
        assert!(validate_commit("").unwrap_err().contains("0 hex digits long"));
        assert!(validate_commit("ABCDEF1").unwrap_err().contains("contains 'A'"));
        assert!(validate_commit("g123456").unwrap_err().contains("contains 'g'"));
    }

    #[test]
    fn quoted_text_is_escaped_and_cut_with_its_size() {
        assert_eq!(quoted("a\u{202e}b"), "\"a\\u{202e}b\"");
        let long = "é".repeat(1000);
        let shown = quoted(&long);
        assert!(shown.ends_with("… (2000 bytes)"), "{shown}");
        assert!(shown.len() < 200);
    }
}
