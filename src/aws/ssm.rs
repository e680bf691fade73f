//! SSM Parameter Store: approved exceptions kept in a parameter
//! (`--exceptions ssm:/keywatch/exceptions`), an [`ExceptionsSource`] whose
//! version is the parameter's `Version`. Every call goes through
//! `aws::call`.
//!
//! A look is one `GetParameter` (with decryption, so a `SecureString`
//! works too); the value is small (4 KB for a standard parameter, 8 KB for
//! an advanced one), so there is nothing to gain from asking for the
//! version alone first.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::call;
use crate::exceptions::{ExceptionsError, Format};
use crate::exceptions_source::{Document, ExceptionsSource, Fetched, Location};
use crate::telemetry::Service;

/// One parameter, by name or ARN.
#[derive(Debug, Clone)]
pub struct SsmParameter {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmParameter {
    pub fn new(client: aws_sdk_ssm::Client, name: String) -> SsmParameter {
        SsmParameter { client, name }
    }

    fn location(&self) -> Location {
        Location::Ssm(self.name.clone())
    }
}

impl ExceptionsSource for SsmParameter {
    fn origin(&self) -> String {
        self.location().to_string()
    }

    fn format(&self) -> Format {
        self.location().format()
    }

    fn fetch<'a>(&'a self, known: Option<&'a str>) -> BoxFuture<'a, Result<Fetched, ExceptionsError>> {
        async move {
            let read_error = |message: String| ExceptionsError::Read { origin: self.origin(), message };
            let request = self.client.get_parameter().name(&self.name).with_decryption(true).send();
            let out = call(Service::Ssm, "GetParameter", request).await.map_err(|e| read_error(e.to_string()))?;
            let parameter = out.parameter().ok_or_else(|| read_error("GetParameter returned no parameter".into()))?;
            let version = parameter.version().to_string();
            if known == Some(version.as_str()) {
                return Ok(Fetched::Unchanged);
            }
            Ok(Fetched::Changed(Document { version, text: parameter.value().unwrap_or_default().to_string() }))
        }
        .boxed()
    }
}

/// The quarantine's kill switch kept in a parameter
/// (`--quarantine-kill-switch-parameter`): engaged when its value is `off`
/// or `disabled` (any case), or when it cannot be read (the safe side).
/// Read at most once per [`KILL_SWITCH_CACHE`].
pub struct SsmKillSwitch {
    parameter: SsmParameter,
    last: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

/// How long a reading of the kill switch is trusted.
pub const KILL_SWITCH_CACHE: std::time::Duration = std::time::Duration::from_secs(10);

impl SsmKillSwitch {
    pub fn new(client: aws_sdk_ssm::Client, name: String) -> SsmKillSwitch {
        SsmKillSwitch { parameter: SsmParameter::new(client, name), last: std::sync::Mutex::new(None) }
    }

    async fn read(&self) -> bool {
        let request = self.parameter.client.get_parameter().name(&self.parameter.name).with_decryption(true).send();
        match call(Service::Ssm, "GetParameter", request).await {
            Ok(out) => {
                let value = out.parameter().and_then(|p| p.value()).unwrap_or_default().trim().to_ascii_lowercase();
                value == "off" || value == "disabled"
            }
            Err(e) => {
                tracing::warn!(parameter = %self.parameter.name, error = %e, "cannot read the quarantine kill switch (KEYWATCH_QUARANTINE_KILL_SWITCH_PARAMETER); no quarantine until it can be read");
                true
            }
        }
    }
}

impl crate::processor::KillSwitch for SsmKillSwitch {
    fn engaged(&self) -> BoxFuture<'_, bool> {
        async move {
            if let Some((at, engaged)) = *self.last.lock().unwrap_or_else(|e| e.into_inner()) {
                if at.elapsed() < KILL_SWITCH_CACHE {
                    return engaged;
                }
            }
            let engaged = self.read().await;
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), engaged));
            engaged
        }
        .boxed()
    }
}
