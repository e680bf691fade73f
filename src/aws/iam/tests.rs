//! The IAM adapter against mocked answers: retries, partitions, the member
//! clients kept.

use aws_sdk_iam::operation::list_access_keys::{ListAccessKeysError, ListAccessKeysOutput};
use aws_sdk_iam::types::{AccessKeyMetadata, StatusType};
use aws_smithy_mocks::{mock, mock_client, RuleMode};

use super::*;

fn key(id: &str) -> AccessKeyMetadata {
    AccessKeyMetadata::builder().access_key_id(id).status(StatusType::Active).user_name("alice").build()
}

#[test]
fn member_role_arns_are_in_the_partition_of_the_workers_region() {
    let iam = aws_sdk_iam::Client::from_conf(aws_sdk_iam::Config::builder().behavior_version_latest().build());
    for (region, want) in [
        ("eu-west-1", "arn:aws:iam::111122223333:role/keywatch-member"),
        ("cn-north-1", "arn:aws-cn:iam::111122223333:role/keywatch-member"),
        ("us-gov-west-1", "arn:aws-us-gov:iam::111122223333:role/keywatch-member"),
    ] {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder().behavior_version_latest().region(aws_sdk_sts::config::Region::new(region)).build(),
        );
        let role = MemberRole { name: "keywatch-member".into(), external_id: None, own_account_id: "444455556666".into(), accounts: 2 };
        let inventory = IamInventory::new(iam.clone()).with_member_role(sts, role);
        assert_eq!(inventory.member.as_ref().unwrap().role_arn("111122223333"), want, "{region}");
    }
}

/// An organisation of 3,000 accounts keeps every account's client (no
/// AssumeRole again for an account whose credentials are good), and the
/// bound holds at its cap whatever the size said.
#[test]
fn every_member_accounts_client_is_kept_in_a_large_organisation() {
    let iam = aws_sdk_iam::Client::from_conf(aws_sdk_iam::Config::builder().behavior_version_latest().build());
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder().behavior_version_latest().region(aws_sdk_sts::config::Region::new("us-east-1")).build(),
    );
    let role = MemberRole { name: "keywatch-member".into(), external_id: None, own_account_id: "444455556666".into(), accounts: 3_000 };
    let inventory = IamInventory::new(iam).with_member_role(sts, role.clone());
    for i in 0..3_000u64 {
        inventory.client_for(&format!("{:012}", 100_000_000_000 + i));
    }
    assert_eq!(inventory.member.as_ref().unwrap().clients.len(), 3_000);
    assert_eq!(MemberRole { accounts: 1_000_000, ..role.clone() }.clients_kept(), MEMBER_CLIENTS_MAX);
    assert_eq!(MemberRole { accounts: 3, ..role }.clients_kept(), MEMBER_CLIENTS);
}

#[tokio::test]
async fn a_throttled_listing_is_retried_and_succeeds() {
    let throttled = mock!(aws_sdk_iam::Client::list_access_keys)
        .sequence()
        .error(|| {
            ListAccessKeysError::generic(aws_sdk_iam::error::ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build())
        })
        .times(2)
        .output(|| ListAccessKeysOutput::builder().access_key_metadata(key("K1")).build().unwrap())
        .build();
    // As in production, the client does not retry: keywatch does.
    let client = mock_client!(aws_sdk_iam, RuleMode::Sequential, [&throttled], |c| c
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled()));
    let limiter = Arc::new(RateLimiter::new(50.0));
    let inventory = IamInventory::new(client)
        .with_limits(limiter.clone(), RetryPolicy { max_attempts: 4, base: Duration::from_millis(1), cap: Duration::from_millis(2) });
    let keys = inventory.list_keys("123456789012", "alice", None).await.unwrap().keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(throttled.num_calls(), 3);
    let rate = limiter.rate("123456789012");
    assert!(rate < 50.0, "the throttles lowered the account rate: {rate}");
}
