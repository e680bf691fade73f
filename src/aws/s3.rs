//! S3: approved exceptions kept in an object
//! (`--exceptions s3://bucket/keywatch/exceptions.yaml`), an
//! [`ExceptionsSource`] whose version is the object's `ETag`. Every call
//! goes through `aws::call`.
//!
//! A look is one `HeadObject`; only a new `ETag` is followed by a
//! `GetObject`, whose own `ETag` becomes the version (so an object replaced
//! between the two calls is taken whole, as the version it is). The bucket
//! must be in the worker's region (`AWS_REGION`) and owned by the expected
//! account (`ExpectedBucketOwner` on both calls: S3 refuses with 403 when
//! the bucket is another account's, e.g. one taken over after a deletion).

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::call;
use crate::exceptions::{ExceptionsError, Format};
use crate::exceptions_source::{Document, ExceptionsSource, Fetched, Location};
use crate::telemetry::Service;

/// Larger objects are refused: an exceptions list is a few kilobytes.
const MAX_OBJECT_BYTES: i64 = 1024 * 1024;

/// One object.
#[derive(Debug, Clone)]
pub struct S3Object {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    /// The account that must own the bucket.
    owner: String,
}

impl S3Object {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, key: String, owner: String) -> S3Object {
        S3Object { client, bucket, key, owner }
    }

    fn location(&self) -> Location {
        Location::S3 { bucket: self.bucket.clone(), key: self.key.clone() }
    }
}

impl ExceptionsSource for S3Object {
    fn origin(&self) -> String {
        self.location().to_string()
    }

    fn format(&self) -> Format {
        self.location().format()
    }

    fn fetch<'a>(&'a self, known: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, ExceptionsError>> {
        async move {
            let read_error = |message: String| ExceptionsError::Read { origin: self.origin(), message };
            let too_large = |size: i64| read_error(format!("the object has {size} bytes, more than {MAX_OBJECT_BYTES}"));
            if let Some(known) = known {
                let head = self.client.head_object().bucket(&self.bucket).key(&self.key).expected_bucket_owner(&self.owner).send();
                let head = call(Service::S3, "HeadObject", head).await.map_err(|e| read_error(e.to_string()))?;
                if head.e_tag() == Some(known) {
                    return Ok(Fetched::Unchanged);
                }
            }
            let get = self.client.get_object().bucket(&self.bucket).key(&self.key).expected_bucket_owner(&self.owner).send();
            let out = call(Service::S3, "GetObject", get).await.map_err(|e| read_error(e.to_string()))?;
            if let Some(size) = out.content_length().filter(|s| *s > MAX_OBJECT_BYTES) {
                return Err(too_large(size));
            }
            let version = out.e_tag().unwrap_or_default().to_string();
            let bytes = out.body.collect().await.map_err(|e| read_error(format!("GetObject: reading the body: {e}")))?.into_bytes();
            if bytes.len() as i64 > MAX_OBJECT_BYTES {
                return Err(too_large(bytes.len() as i64));
            }
            Ok(Fetched::Changed(Document { version, text: String::from_utf8_lossy(&bytes).into_owned() }))
        }
        .boxed()
    }
}
