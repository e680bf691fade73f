//! AWS: every adapter, and the one path every AWS call takes.
//!
//! The adapters translate between the SDKs and the core's ports:
//! [`sqs`] (the input queue, a message source), [`iam`] (the key
//! inventory), [`eventbridge`] and [`securityhub`] (finding sinks), `sts`
//! (the worker's account and member-account credentials), `organizations`
//! (the organisation's accounts), [`ssm`] and [`s3`] (sources of the approved
//! exceptions). [`Clients`] builds each SDK client once, when first needed,
//! for the binary, the tests and the benchmarks alike.
//!
//! Every AWS call goes through `call`, so `keywatch_aws_requests_total` and
//! `keywatch_aws_request_duration_seconds` see all of them with the same
//! labels, and every error is classified the same way: throttled and
//! transient errors leave the message for redelivery, permanent ones are
//! logged and (for input problems) left to the queue's redrive policy.

pub(crate) mod dynamodb;
pub mod eventbridge;
pub mod iam;
pub(crate) mod organizations;
pub mod s3;
pub mod securityhub;
pub mod sqs;
pub mod ssm;
pub(crate) mod sts;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub use crate::error::{AwsError, ErrorClass};
use crate::telemetry::{self, CallOutcome, Service};

/// Error codes AWS services use for throttling.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Service error codes that are transient whatever their HTTP status.
const TRANSIENT_CODES: &[&str] = &["InternalFailure", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException"];

fn classify_code(code: Option<&str>, http_status: Option<u16>) -> ErrorClass {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) => ErrorClass::Throttled,
        Some(c) if TRANSIENT_CODES.contains(&c) => ErrorClass::Transient,
        _ if http_status == Some(429) => ErrorClass::Throttled,
        _ if http_status.is_some_and(|s| s >= 500) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies an SDK error.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> ErrorClass {
    // No credentials (a role that cannot be assumed, a broken profile):
    // retrying the same call at once would only ask STS again.
    if is_credentials_failure(err) {
        return ErrorClass::Permanent;
    }
    match err {
        SdkError::ServiceError(ctx) => classify_code(ctx.err().code(), Some(ctx.raw().status().as_u16())),
        SdkError::ConstructionFailure(_) => ErrorClass::Permanent,
        // Timeouts, connection failures, unreadable responses.
        _ => ErrorClass::Transient,
    }
}

/// The code of an error whose cause is that no credentials could be had.
const CREDENTIALS_ERROR: &str = "CredentialsError";

/// Whether the error's cause, anywhere in its chain, is a credentials
/// provider's failure.
fn is_credentials_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The service's error code, when the service answered with one.
fn error_code<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> Option<String> {
    if is_credentials_failure(err) {
        return Some(CREDENTIALS_ERROR.to_string());
    }
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code().map(str::to_string),
        _ => None,
    }
}

/// A one-line description with the whole error chain (the SDK's own
/// `Display` says only "service error").
fn describe<E: std::error::Error + 'static>(err: &E) -> String {
    DisplayErrorContext(err).to_string().replace('\n', " ")
}

impl AwsError {
    fn from_sdk<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        AwsError { operation, class: classify(err), code: error_code(err), message: describe(err) }
    }
}

/// Runs one AWS call, recording its duration and outcome.
async fn call<T, E, F>(service: Service, operation: &'static str, fut: F) -> Result<T, AwsError>
where
    F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let started = Instant::now();
    let result = fut.await;
    let outcome = match &result {
        Ok(_) => CallOutcome::Ok,
        Err(e) if classify(e) == ErrorClass::Throttled => CallOutcome::Throttled,
        Err(_) => CallOutcome::Error,
    };
    telemetry::aws_request(service, operation, outcome, started.elapsed());
    result.map_err(|e| AwsError::from_sdk(operation, &e))
}

/// Timeouts of every AWS call but the long poll: 10 s an attempt, 20 s in
/// all (retries included), below the drain timeout's default (30 s), so
/// that a stalled call cannot outlive shutdown.
fn call_timeouts() -> aws_config::timeout::TimeoutConfig {
    use std::time::Duration;
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(20))
        .build()
}

/// The service clients, configured from one SDK config, each built the
/// first time it is asked for: SQS with attempt timeouts above the long-poll
/// wait (a shorter one would cut every receive), IAM signed for its global
/// region and without SDK retries (keywatch retries IAM itself, per account,
/// counting each attempt), EventBridge, Security Hub, STS, Organizations,
/// SSM, S3 and DynamoDB (the ledger) with the SDK's standard retries.
///
/// Built on demand because a client costs memory and start-up work (each
/// SDK crate parses its own copy of the endpoint partitions) and most runs
/// need only four of the nine: a worker without Security Hub, exceptions in
/// SSM or S3, or an organisation never builds those clients.
///
/// None of them watches uploads for stalls: request bodies are small and in
/// memory, the attempt timeouts bound a stalled call anyway, and the check
/// wakes every call in flight ten times a second, a 20 s long poll included
/// (most of an idle worker's CPU). Stalled downloads are still detected.
/// Clones share the clients built so far.
#[derive(Clone)]
pub struct Clients {
    inner: std::sync::Arc<Built>,
}

struct Built {
    sdk: aws_config::SdkConfig,
    wait: std::time::Duration,
    iam_region: aws_config::Region,
    sqs: OnceLock<aws_sdk_sqs::Client>,
    iam: OnceLock<aws_sdk_iam::Client>,
    eventbridge: OnceLock<aws_sdk_eventbridge::Client>,
    securityhub: OnceLock<aws_sdk_securityhub::Client>,
    sts: OnceLock<aws_sdk_sts::Client>,
    organizations: OnceLock<aws_sdk_organizations::Client>,
    ssm: OnceLock<aws_sdk_ssm::Client>,
    s3: OnceLock<aws_sdk_s3::Client>,
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
}

/// Upload stall protection off, download stall protection on (see
/// [`Clients`]).
fn stalls() -> aws_config::stalled_stream_protection::StalledStreamProtectionConfig {
    aws_config::stalled_stream_protection::StalledStreamProtectionConfig::enabled().upload_enabled(false).build()
}

impl Clients {
    /// Keeps what the clients are built from; builds none of them yet.
    pub fn new(sdk: &aws_config::SdkConfig, wait: std::time::Duration, iam_region: &str) -> Clients {
        let built = Built {
            sdk: sdk.clone(),
            wait,
            iam_region: aws_config::Region::new(iam_region.to_string()),
            sqs: OnceLock::new(),
            iam: OnceLock::new(),
            eventbridge: OnceLock::new(),
            securityhub: OnceLock::new(),
            sts: OnceLock::new(),
            organizations: OnceLock::new(),
            ssm: OnceLock::new(),
            s3: OnceLock::new(),
            dynamodb: OnceLock::new(),
        };
        Clients { inner: std::sync::Arc::new(built) }
    }

    /// The clients built so far, by service name, in a fixed order.
    pub(crate) fn built(&self) -> Vec<&'static str> {
        let b = &*self.inner;
        let all = [
            ("sqs", b.sqs.get().is_some()),
            ("iam", b.iam.get().is_some()),
            ("eventbridge", b.eventbridge.get().is_some()),
            ("securityhub", b.securityhub.get().is_some()),
            ("sts", b.sts.get().is_some()),
            ("organizations", b.organizations.get().is_some()),
            ("ssm", b.ssm.get().is_some()),
            ("s3", b.s3.get().is_some()),
            ("dynamodb", b.dynamodb.get().is_some()),
        ];
        all.into_iter().filter(|(_, built)| *built).map(|(name, _)| name).collect()
    }

    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        let b = &*self.inner;
        b.sqs
            .get_or_init(|| {
                let timeouts = aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .operation_attempt_timeout(b.wait + std::time::Duration::from_secs(10))
                    .build();
                let conf = aws_sdk_sqs::config::Builder::from(&b.sdk).timeout_config(timeouts).stalled_stream_protection(stalls());
                aws_sdk_sqs::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        let b = &*self.inner;
        b.iam
            .get_or_init(|| {
                let conf = aws_sdk_iam::config::Builder::from(&b.sdk)
                    .region(b.iam_region.clone())
                    .timeout_config(call_timeouts())
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .stalled_stream_protection(stalls());
                aws_sdk_iam::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub(crate) fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        let b = &*self.inner;
        b.eventbridge
            .get_or_init(|| {
                let conf =
                    aws_sdk_eventbridge::config::Builder::from(&b.sdk).timeout_config(call_timeouts()).stalled_stream_protection(stalls());
                aws_sdk_eventbridge::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub(crate) fn securityhub(&self) -> aws_sdk_securityhub::Client {
        let b = &*self.inner;
        b.securityhub
            .get_or_init(|| {
                let conf =
                    aws_sdk_securityhub::config::Builder::from(&b.sdk).timeout_config(call_timeouts()).stalled_stream_protection(stalls());
                aws_sdk_securityhub::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        let b = &*self.inner;
        b.sts
            .get_or_init(|| {
                let conf = aws_sdk_sts::config::Builder::from(&b.sdk).timeout_config(call_timeouts()).stalled_stream_protection(stalls());
                aws_sdk_sts::Client::from_conf(conf.build())
            })
            .clone()
    }

    /// Organizations, like IAM, is global: signed for its one region.
    pub(crate) fn organizations(&self) -> aws_sdk_organizations::Client {
        let b = &*self.inner;
        b.organizations
            .get_or_init(|| {
                let conf = aws_sdk_organizations::config::Builder::from(&b.sdk)
                    .region(b.iam_region.clone())
                    .timeout_config(call_timeouts())
                    .stalled_stream_protection(stalls());
                aws_sdk_organizations::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        let b = &*self.inner;
        b.ssm
            .get_or_init(|| {
                let conf = aws_sdk_ssm::config::Builder::from(&b.sdk).timeout_config(call_timeouts()).stalled_stream_protection(stalls());
                aws_sdk_ssm::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let b = &*self.inner;
        b.dynamodb
            .get_or_init(|| {
                let conf =
                    aws_sdk_dynamodb::config::Builder::from(&b.sdk).timeout_config(call_timeouts()).stalled_stream_protection(stalls());
                aws_sdk_dynamodb::Client::from_conf(conf.build())
            })
            .clone()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let b = &*self.inner;
        b.s3.get_or_init(|| {
            let conf = aws_sdk_s3::config::Builder::from(&b.sdk).timeout_config(call_timeouts()).stalled_stream_protection(stalls());
            aws_sdk_s3::Client::from_conf(conf.build())
        })
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[test]
    fn a_client_is_built_when_first_asked_for_and_shared_by_clones() {
        let clients = Clients::new(&sdk(), std::time::Duration::from_secs(20), "us-east-1");
        assert!(clients.built().is_empty(), "nothing is built up front");
        let copy = clients.clone();
        let _ = copy.sqs();
        let _ = clients.iam();
        let _ = clients.iam();
        assert_eq!(clients.built(), ["sqs", "iam"]);
        assert_eq!(copy.built(), ["sqs", "iam"], "clones share what is built");
    }

    #[test]
    fn iam_and_organizations_are_signed_for_the_global_region() {
        let clients = Clients::new(&sdk(), std::time::Duration::from_secs(20), "us-gov-west-1");
        assert_eq!(clients.iam().config().region().map(|r| r.as_ref()), Some("us-gov-west-1"));
        assert_eq!(clients.organizations().config().region().map(|r| r.as_ref()), Some("us-gov-west-1"));
        assert_eq!(clients.sqs().config().region().map(|r| r.as_ref()), Some("eu-west-1"));
    }
}
