//! Organizations: the organisation's ACTIVE accounts (`ListAccounts`, every
//! page), for `KEYWATCH_ACCOUNTS=organization`, and an account's tags
//! (`ListTagsForResource`), for `keywatch remediate --first-tag`.

use aws_sdk_organizations::types::AccountStatus;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{call, AwsError};
use crate::accounts::AccountLister;
use crate::telemetry::Service;

pub(crate) struct OrganizationAccounts {
    client: aws_sdk_organizations::Client,
}

impl OrganizationAccounts {
    pub(crate) fn new(client: aws_sdk_organizations::Client) -> Self {
        OrganizationAccounts { client }
    }

    /// The tags of `account_id`, every page.
    pub(crate) async fn account_tags(&self, account_id: &str) -> Result<Vec<(String, String)>, AwsError> {
        let mut tags = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self.client.list_tags_for_resource().resource_id(account_id).set_next_token(token.clone()).send();
            let page = call(Service::Organizations, "ListTagsForResource", request).await?;
            tags.extend(page.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())));
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(tags)
    }

    async fn list(&self) -> Result<Vec<String>, AwsError> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page =
                call(Service::Organizations, "ListAccounts", self.client.list_accounts().set_next_token(token.clone()).send()).await?;
            ids.extend(
                page.accounts().iter().filter(|a| a.status() == Some(&AccountStatus::Active)).filter_map(|a| a.id().map(str::to_string)),
            );
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(ids)
    }
}

impl AccountLister for OrganizationAccounts {
    fn active_accounts(&self) -> BoxFuture<'_, Result<Vec<String>, AwsError>> {
        self.list().boxed()
    }
}
