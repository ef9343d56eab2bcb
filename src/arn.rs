//! Lambda function ARNs and the glob patterns that say which ones the deployer may touch.

use std::fmt;

/// An unqualified Lambda function ARN: `arn:<partition>:lambda:<region>:<account>:function:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FunctionArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
}

impl FunctionArn {
    /// Parses and validates an ARN, explaining what is wrong in terms a manifest author can act on.
    pub fn parse(arn: &str) -> Result<FunctionArn, String> {
        let parts: Vec<&str> = arn.split(':').collect();
        let shape = "expected arn:<partition>:lambda:<region>:<account-id>:function:<name>";
        if parts.len() == 8 && parts[2] == "lambda" && parts[5] == "function" {
            return Err(format!("{arn:?} has a qualifier ({:?}); deploy to the unqualified function ARN", parts[7]));
        }
        let [arn_prefix, partition, service, region, account, resource_type, name] = parts[..] else {
            return Err(format!("{arn:?} is not a Lambda function ARN: {shape}"));
        };
        if arn_prefix != "arn" || service != "lambda" || resource_type != "function" {
            return Err(format!("{arn:?} is not a Lambda function ARN: {shape}"));
        }
        if !partition.starts_with("aws") || !partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(format!("{arn:?} has an unknown partition {partition:?}"));
        }
        let region_ok = region.split('-').count() >= 3
            && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(format!("{arn:?} has an invalid region {region:?}"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{arn:?} has an invalid account id {account:?} (12 digits expected)"));
        }
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("{arn:?} has an invalid function name {name:?}"));
        }
        Ok(FunctionArn {
            partition: partition.into(),
            region: region.into(),
            account: account.into(),
            name: name.into(),
        })
    }
}

impl fmt::Display for FunctionArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:{}:lambda:{}:{}:function:{}", self.partition, self.region, self.account, self.name)
    }
}

/// A glob over ARNs: `*` matches any run of characters (including `:`), everything else is literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnGlob(String);

impl ArnGlob {
    pub fn new(pattern: &str) -> Result<ArnGlob, String> {
        let pattern = pattern.trim();
        if !pattern.starts_with("arn:") {
            return Err(format!("{pattern:?} is not an ARN pattern (must start with \"arn:\")"));
        }
        Ok(ArnGlob(pattern.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, text: &str) -> bool {
        glob_match(self.0.as_bytes(), text.as_bytes())
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in practice, no recursion on hostile input.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_function_arn_parses_into_its_parts() {
        let arn = FunctionArn::parse("arn:aws:lambda:us-east-1:123456789012:function:orders-prod").unwrap();
        assert_eq!(
            (arn.partition.as_str(), arn.region.as_str(), arn.account.as_str()),
            ("aws", "us-east-1", "123456789012")
        );
        assert_eq!(arn.name, "orders-prod");
        assert_eq!(arn.to_string(), "arn:aws:lambda:us-east-1:123456789012:function:orders-prod");
    }

    #[test]
    fn other_partitions_parse() {
        assert!(FunctionArn::parse("arn:aws-cn:lambda:cn-north-1:123456789012:function:f").is_ok());
        assert!(FunctionArn::parse("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f").is_ok());
    }

    #[test]
    fn malformed_arns_are_rejected_with_the_reason() {
        let cases = [
            ("arn:aws:lambda:us-east-1:123456789012:function:f:live", "qualifier"),
            ("arn:aws:s3:::bucket", "not a Lambda function ARN"),
            ("arn:aws:lambda:us-east-1:12345:function:f", "account id"),
            ("arn:aws:lambda:useast1:123456789012:function:f", "region"),
            ("arn:aws:lambda:us-east-1:123456789012:function:bad/name", "function name"),
            ("arn:gcp:lambda:us-east-1:123456789012:function:f", "partition"),
            ("", "not a Lambda function ARN"),
        ];
        for (arn, reason) in cases {
            let err = FunctionArn::parse(arn).unwrap_err();
            assert!(err.contains(reason), "{arn:?}: {err}");
        }
    }

    #[test]
    fn globs_match_whole_arns_only() {
        let glob = ArnGlob::new("arn:aws:lambda:us-east-1:123456789012:function:orders-*").unwrap();
        assert!(glob.matches("arn:aws:lambda:us-east-1:123456789012:function:orders-prod"));
        assert!(!glob.matches("arn:aws:lambda:us-east-1:123456789012:function:payments-prod"));
        assert!(!glob.matches("arn:aws:lambda:us-east-1:999999999999:function:orders-prod"));
        let any_region = ArnGlob::new("arn:aws:lambda:*:123456789012:function:*").unwrap();
        assert!(any_region.matches("arn:aws:lambda:eu-west-1:123456789012:function:x"));
        assert!(!any_region.matches("arn:aws:lambda:eu-west-1:123456789013:function:x"));
    }

    #[test]
    fn glob_matching_of_a_hostile_pattern_terminates() {
        let glob = ArnGlob::new(&format!("arn:{}b", "*a".repeat(50))).unwrap();
        assert!(!glob.matches(&format!("arn:{}", "a".repeat(5000))));
    }
}
