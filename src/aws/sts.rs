//! STS: the worker's own account id and credentials for member accounts,
//! each call through [`super::call`] so that STS is timed and counted like
//! every other AWS call.
//!
//! [`AssumeRoleCredentials`] is a credentials provider for an IAM client of
//! a member account: the SDK's identity cache in front of it keeps the
//! credentials and asks again shortly before they expire.

use std::time::SystemTime;

use aws_credential_types::provider::{self, error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;

use super::{call, AwsError};
use crate::telemetry::Service;

/// The account the credentials of `sts` belong to (`GetCallerIdentity`).
pub(crate) async fn own_account_id(sts: &aws_sdk_sts::Client) -> Result<String, AwsError> {
    let me = call(Service::Sts, "GetCallerIdentity", sts.get_caller_identity().send()).await?;
    Ok(me.account().unwrap_or_default().to_string())
}

/// Credentials from `sts:AssumeRole` into one role.
#[derive(Debug, Clone)]
pub(crate) struct AssumeRoleCredentials {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    external_id: Option<String>,
}

impl AssumeRoleCredentials {
    pub(crate) fn new(sts: aws_sdk_sts::Client, role_arn: String, external_id: Option<String>) -> Self {
        AssumeRoleCredentials { sts, role_arn, external_id }
    }

    async fn assume(&self) -> provider::Result {
        let request =
            self.sts.assume_role().role_arn(&self.role_arn).role_session_name("keywatch").set_external_id(self.external_id.clone()).send();
        let out = call(Service::Sts, "AssumeRole", request).await.map_err(CredentialsError::provider_error)?;
        let c = out.credentials().ok_or_else(|| CredentialsError::provider_error("AssumeRole returned no credentials"))?;
        let expiry = SystemTime::try_from(*c.expiration()).map_err(CredentialsError::provider_error)?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            Some(expiry),
            "keywatch-assume-role",
        ))
    }
}

impl ProvideCredentials for AssumeRoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.assume())
    }
}
