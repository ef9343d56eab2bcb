//! Observes artifacts in S3: the exact object (bucket, key, version) and its SHA-256, which is what Lambda's
//! CodeSha256 is compared with. The hash comes from S3's full-object checksum when present; otherwise the object is
//! downloaded and hashed once, and the status remembers the hash by version/ETag so later sweeps do not download it.

use std::collections::HashMap;

use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::aws::aws_error;
use crate::crd::ArtifactStatus;
use crate::plan::Observed;
use crate::retry::{Budget, Call};

pub struct ArtifactStore {
    s3: aws_sdk_s3::Client,
}

impl ArtifactStore {
    pub fn new(s3: aws_sdk_s3::Client) -> Self {
        ArtifactStore { s3 }
    }

    /// Lists the bucket (1,000 keys a page, while fewer than `max_pages()` were read): key → ETag of its current
    /// version. A sweep uses it to confirm that artifacts it already knows are unchanged without one HeadObject each.
    pub async fn list(
        &self,
        bucket: &str,
        max_pages: impl Fn() -> usize,
        budget: Budget<'_>,
    ) -> Result<HashMap<String, String>, crate::Error> {
        let mut etags = HashMap::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        while pages < max_pages() {
            pages += 1;
            let page = budget
                .run(Call::new("s3", "ListObjectsV2"), None, || async {
                    self.s3
                        .list_objects_v2()
                        .bucket(bucket)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| aws_error("s3", "ListObjectsV2", e))
                })
                .await?;
            for object in page.contents() {
                if let (Some(key), Some(etag)) = (object.key(), object.e_tag()) {
                    etags.insert(key.to_string(), etag.to_string());
                }
            }
            token = page.next_continuation_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        Ok(etags)
    }

    /// `known` is the artifact as the status last recorded it; its hash is reused when the object is unchanged.
    pub async fn observe(
        &self,
        bucket: &str,
        key: &str,
        known: Option<&ArtifactStatus>,
        budget: Budget<'_>,
    ) -> Observed<ArtifactStatus> {
        let head = budget
            .run(Call::new("s3", "HeadObject"), None, || async {
                self.s3
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .checksum_mode(ChecksumMode::Enabled)
                    .send()
                    .await
                    .map_err(|e| aws_error("s3", "HeadObject", e))
            })
            .await;
        let head = match head {
            Ok(head) => head,
            Err(err) if err.aws_code() == Some("NotFound") || err.aws_code() == Some("NoSuchKey") => {
                return Observed::Missing;
            }
            Err(err) => return Observed::failed(&err),
        };
        if head.content_length() == Some(0) {
            return Observed::Failed(format!("s3://{bucket}/{key} is empty (0 bytes), not a zip"));
        }
        let mut artifact = ArtifactStatus {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: head.version_id().map(String::from),
            etag: head.e_tag().map(String::from),
            sha256: String::new(),
        };
        if let Some(known) = known.filter(|known| same_object(known, &artifact) && !known.sha256.is_empty()) {
            artifact.sha256 = known.sha256.clone();
            return Observed::Found(artifact);
        }
        let full_object_checksum = head
            .checksum_sha256()
            .filter(|_| matches!(head.checksum_type(), None | Some(ChecksumType::FullObject)))
            // A multipart composite checksum looks like "<base64>-<parts>": not the object's hash.
            .filter(|checksum| !checksum.contains('-'));
        if let Some(checksum) = full_object_checksum {
            // The checksum spares the download, not the check that Lambda will be able to unzip it.
            return match self.read_signature(&artifact, budget).await {
                Ok(()) => {
                    artifact.sha256 = checksum.to_string();
                    Observed::Found(artifact)
                }
                Err(unobserved) => unobserved,
            };
        }
        match self.hash(&artifact, budget).await {
            Ok(sha256) => {
                artifact.sha256 = sha256;
                Observed::Found(artifact)
            }
            Err(unobserved) => unobserved,
        }
    }

    /// Reads the first bytes of exactly the observed version: a zip starts with `PK`.
    async fn read_signature(&self, artifact: &ArtifactStatus, budget: Budget<'_>) -> Result<(), Unobserved> {
        let object = self.get(artifact, Some("bytes=0-3"), budget).await?;
        let (bucket, key) = (&artifact.bucket, &artifact.key);
        let head = within(budget, object.body.collect())
            .await?
            .map_err(|e| Observed::Failed(format!("reading s3://{bucket}/{key}: {e}")))?
            .into_bytes();
        if !head.starts_with(b"PK") {
            return Err(Observed::Failed(format!("s3://{bucket}/{key} is not a zip file")));
        }
        Ok(())
    }

    /// GetObject of exactly the observed version (optionally a byte range).
    async fn get(
        &self,
        artifact: &ArtifactStatus,
        range: Option<&str>,
        budget: Budget<'_>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, Unobserved> {
        budget
            .run(Call::new("s3", "GetObject"), None, || async {
                self.s3
                    .get_object()
                    .bucket(&artifact.bucket)
                    .key(&artifact.key)
                    .set_version_id(artifact.version_id.clone())
                    .set_range(range.map(String::from))
                    .send()
                    .await
                    .map_err(|e| aws_error("s3", "GetObject", e))
            })
            .await
            .map_err(|err| Observed::failed(&err))
    }

    /// Downloads exactly the observed version and hashes it as Lambda will (base64 of the SHA-256 digest).
    async fn hash(&self, artifact: &ArtifactStatus, budget: Budget<'_>) -> Result<String, Unobserved> {
        let (bucket, key) = (&artifact.bucket, &artifact.key);
        let object = self.get(artifact, None, budget).await?;
        let mut body = object.body;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(4);
        let read = async {
            while let Some(chunk) = body.try_next().await? {
                if head.len() < 4 {
                    head.extend(chunk.iter().take(4 - head.len()));
                }
                hasher.update(&chunk);
            }
            Ok::<_, aws_sdk_s3::primitives::ByteStreamError>(())
        };
        within(budget, read).await?.map_err(|e| Observed::Failed(format!("reading s3://{bucket}/{key}: {e}")))?;
        if !head.starts_with(b"PK") {
            return Err(Observed::Failed(format!("s3://{bucket}/{key} is not a zip file")));
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
    }
}

/// Why an artifact could not be known: a failure to report, or the deadline (nothing to report).
type Unobserved = Observed<ArtifactStatus>;

/// Reading a body is bounded by the invocation's deadline like every call.
async fn within<T>(budget: Budget<'_>, read: impl Future<Output = T>) -> Result<T, Unobserved> {
    match budget.time_left() {
        Some(left) => tokio::time::timeout(left, read).await.map_err(|_| Observed::NotObserved),
        None => Ok(read.await),
    }
}

/// The same object version: by version id when the bucket is versioned, else by ETag.
fn same_object(known: &ArtifactStatus, current: &ArtifactStatus) -> bool {
    known.bucket == current.bucket
        && known.key == current.key
        && match (&known.version_id, &current.version_id) {
            (Some(a), Some(b)) => a == b && known.etag == current.etag,
            (None, None) => known.etag.is_some() && known.etag == current.etag,
            _ => false,
        }
}
