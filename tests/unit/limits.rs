//! IAM rate limiting and retries. Throttling, pagination and error codes
//! that the emulator cannot produce are driven through a mocked IAM client
//! (aws-smithy-mocks); the limiter's timing runs on tokio's paused clock, so
//! it is exact rather than measured.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iam::operation::get_access_key_last_used::GetAccessKeyLastUsedOutput;
use aws_sdk_iam::operation::list_access_keys::{ListAccessKeysError, ListAccessKeysOutput};
use aws_sdk_iam::types::{AccessKeyMetadata, StatusType};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use keywatch::aws::iam::IamInventory;
use keywatch::aws::{AwsError, ErrorClass};
use keywatch::inventory::{InventoryError, KeyInventory, Need};
use keywatch::limit::{in_background, RateLimiter, RetryPolicy};

fn aws_error(class: ErrorClass, code: &str) -> AwsError {
    AwsError { operation: "ListAccessKeys", class, code: Some(code.into()), message: code.into() }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy { max_attempts: 4, base: Duration::from_millis(1), cap: Duration::from_millis(2) }
}

#[tokio::test(start_paused = true)]
async fn the_bucket_allows_its_burst_then_its_rate() {
    let limiter = RateLimiter::new(10.0);
    let start = tokio::time::Instant::now();
    for _ in 0..10 {
        limiter.acquire("111122223333").await;
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the burst is immediate");
    for _ in 0..10 {
        limiter.acquire("111122223333").await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1100), "{elapsed:?}");
    // Another account has its own bucket.
    let other = tokio::time::Instant::now();
    limiter.acquire("444455556666").await;
    assert_eq!(other.elapsed(), Duration::ZERO);
}

/// A scan's calls (in the background) as fast as the bucket lets them;
/// counts them.
fn background_caller(limiter: Arc<RateLimiter>, taken: Arc<AtomicU32>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(in_background(async move {
        loop {
            limiter.acquire("111122223333").await;
            taken.fetch_add(1, Ordering::SeqCst);
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn background_calls_get_the_rate_but_leave_detection_a_reserve_and_go_after_it() {
    let limiter = Arc::new(RateLimiter::new(8.0));
    let taken = Arc::new(AtomicU32::new(0));
    let scan = background_caller(limiter.clone(), taken.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Alone, the scan gets the account's rate: its burst less a reserve of
    // two tokens (a quarter of the burst), then 8 a second.
    let alone = taken.load(Ordering::SeqCst);
    assert!((6 + 79..=6 + 80).contains(&alone), "{alone}");

    // A detection call finds the reserve at once.
    let start = tokio::time::Instant::now();
    limiter.acquire("111122223333").await;
    limiter.acquire("111122223333").await;
    assert_eq!(start.elapsed(), Duration::ZERO, "the reserve is taken at once");
    // More of them wait for tokens, and each goes before the scan's calls.
    let before = taken.load(Ordering::SeqCst);
    for _ in 0..8 {
        limiter.acquire("111122223333").await;
    }
    assert!(start.elapsed() <= Duration::from_millis(1_010), "at the account's rate: {:?}", start.elapsed());
    assert_eq!(taken.load(Ordering::SeqCst), before, "no background call while detection calls waited");

    // Then the scan goes on at the account's rate, once the reserve is back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(taken.load(Ordering::SeqCst) >= before + 12, "{} after {before}", taken.load(Ordering::SeqCst));
    scan.abort();
}

#[tokio::test(start_paused = true)]
async fn a_detection_call_given_up_while_waiting_does_not_hold_the_background_back() {
    let limiter = RateLimiter::new(2.0);
    limiter.acquire("111122223333").await;
    limiter.acquire("111122223333").await;
    // Waits for a token, and is given up (its future dropped) first.
    assert!(tokio::time::timeout(Duration::from_millis(100), limiter.acquire("111122223333")).await.is_err());
    // A background call needs the token and the reserve (two): 1 s from empty.
    let start = tokio::time::Instant::now();
    let background = tokio::time::timeout(Duration::from_secs(5), in_background(limiter.acquire("111122223333")));
    assert!(background.await.is_ok(), "the waiter given up is no longer counted");
    assert!(start.elapsed() <= Duration::from_secs(1), "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn run_retries_throttles_and_transient_errors_but_not_permanent_ones() {
    let limiter = RateLimiter::new(0.0);
    let calls = AtomicU32::new(0);
    let result = limiter
        .run("a", &fast_retries(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(aws_error(ErrorClass::Throttled, "Throttling")),
                1 => Err(aws_error(ErrorClass::Transient, "ServiceUnavailable")),
                _ => Ok(7),
            }
        })
        .await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let calls = AtomicU32::new(0);
    let result: Result<(), _> = limiter
        .run("a", &fast_retries(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(aws_error(ErrorClass::Permanent, "AccessDenied"))
        })
        .await;
    assert_eq!(result.unwrap_err().code.as_deref(), Some("AccessDenied"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a permanent error is not retried");

    let calls = AtomicU32::new(0);
    let result: Result<(), _> = limiter
        .run("a", &fast_retries(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(aws_error(ErrorClass::Throttled, "Throttling"))
        })
        .await;
    assert!(result.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4, "bounded by max_attempts");
}

#[test]
fn backoff_is_jittered_below_a_doubling_ceiling() {
    let p = RetryPolicy { max_attempts: 5, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
    for attempt in 1..8 {
        let ceiling = Duration::from_millis(100 * (1 << attempt)).min(Duration::from_secs(1));
        for _ in 0..20 {
            assert!(p.backoff(attempt) < ceiling);
        }
    }
}

fn key(id: &str) -> AccessKeyMetadata {
    AccessKeyMetadata::builder().access_key_id(id).status(StatusType::Active).user_name("alice").build()
}

#[tokio::test]
async fn every_page_of_list_access_keys_is_read() {
    let first = mock!(aws_sdk_iam::Client::list_access_keys)
        .match_requests(|r| r.marker().is_none())
        .then_output(|| ListAccessKeysOutput::builder().access_key_metadata(key("K1")).is_truncated(true).marker("m1").build().unwrap());
    let second = mock!(aws_sdk_iam::Client::list_access_keys).match_requests(|r| r.marker() == Some("m1")).then_output(|| {
        ListAccessKeysOutput::builder().access_key_metadata(key("K2")).access_key_metadata(key("K3")).is_truncated(false).build().unwrap()
    });
    let client = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&first, &second]);
    let keys = IamInventory::new(client).list_keys("123456789012", "alice", None).await.unwrap().keys;
    let ids: Vec<&str> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
    assert_eq!(ids, ["K1", "K2", "K3"]);
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn unknown_users_and_denied_calls_are_permanent() {
    let missing = mock!(aws_sdk_iam::Client::list_access_keys).then_error(|| {
        ListAccessKeysError::NoSuchEntityException(
            // As the SDK's deserializer does, the error carries IAM's code.
            aws_sdk_iam::types::error::NoSuchEntityException::builder()
                .message("The user with name ghost cannot be found.")
                .meta(aws_sdk_iam::error::ErrorMetadata::builder().code("NoSuchEntity").build())
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_iam, [&missing]);
    let err = IamInventory::new(client)
        .with_limits(Arc::new(RateLimiter::new(0.0)), fast_retries())
        .list_keys("1", "ghost", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InventoryError::NoSuchUser { .. }), "{err}");
    assert_eq!(missing.num_calls(), 1);

    let denied = mock!(aws_sdk_iam::Client::list_access_keys).then_error(|| {
        ListAccessKeysError::generic(aws_sdk_iam::error::ErrorMetadata::builder().code("AccessDenied").message("not authorized").build())
    });
    let client = mock_client!(aws_sdk_iam, [&denied]);
    let err = IamInventory::new(client)
        .with_limits(Arc::new(RateLimiter::new(0.0)), fast_retries())
        .list_keys("1", "alice", None)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(denied.num_calls(), 1, "not retried");
}

#[tokio::test]
async fn last_use_is_read_and_never_used_keys_have_none() {
    let rule = mock!(aws_sdk_iam::Client::get_access_key_last_used).then_output(|| {
        GetAccessKeyLastUsedOutput::builder()
            .user_name("alice")
            .access_key_last_used(aws_sdk_iam::types::AccessKeyLastUsed::builder().service_name("N/A").region("N/A").build().unwrap())
            .build()
    });
    let client = mock_client!(aws_sdk_iam, [&rule]);
    let last = IamInventory::new(client).last_used("1", "K1", Need::Required).await.unwrap().unwrap();
    assert_eq!(last.user_name.as_deref(), Some("alice"));
    assert_eq!(last.usage.last_used_at, None);
    assert_eq!(last.usage.service, None, "N/A means never used");
}

/// Findings kept in memory: the sink is not what this test is about.
#[derive(Default)]
struct Kept(std::sync::Mutex<Vec<keywatch::finding::Finding>>);

impl keywatch::sink::FindingSink for Kept {
    fn name(&self) -> &'static str {
        "kept"
    }
    fn publish<'a>(
        &'a self,
        findings: &'a [keywatch::finding::Finding],
    ) -> futures_util::future::BoxFuture<'a, Vec<Result<(), keywatch::sink::SinkError>>> {
        self.0.lock().unwrap().extend_from_slice(findings);
        Box::pin(std::future::ready(findings.iter().map(|_| Ok(())).collect()))
    }
}

/// Key `n` of `user`, in IAM's key id alphabet.
fn key_id(user: &str, n: u32) -> String {
    format!("AKIAEXAMPLE{}{n:04}", user.to_uppercase())
}

/// A CreateAccessKey envelope (the fixture) for `user`, key 2 of the user.
fn create_body(user: &str) -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/create_access_key_admin.json").unwrap()).unwrap();
    v["detail"]["requestParameters"]["userName"] = user.into();
    v["detail"]["responseElements"]["accessKey"]["userName"] = user.into();
    v["detail"]["responseElements"]["accessKey"]["accessKeyId"] = key_id(user, 2).into();
    v.to_string()
}

#[tokio::test(start_paused = true)]
async fn under_a_burst_listings_take_the_iam_budget_and_last_use_waits_for_room() {
    use keywatch::config::RunArgs;
    use keywatch::inventory::cached::{CacheSettings, CachingInventory};
    use keywatch::message::{Disposition, Message};
    use keywatch::processor::{Processor, ProcessorSettings};
    let list_alice = mock!(aws_sdk_iam::Client::list_access_keys).match_requests(|r| r.user_name() == Some("alice")).then_output(|| {
        ListAccessKeysOutput::builder()
            .access_key_metadata(key(&key_id("alice", 1)))
            .access_key_metadata(key(&key_id("alice", 2)))
            .build()
            .unwrap()
    });
    let list_bob = mock!(aws_sdk_iam::Client::list_access_keys).match_requests(|r| r.user_name() == Some("bob")).then_output(|| {
        ListAccessKeysOutput::builder()
            .access_key_metadata(key(&key_id("bob", 1)))
            .access_key_metadata(key(&key_id("bob", 2)))
            .build()
            .unwrap()
    });
    let last_used = mock!(aws_sdk_iam::Client::get_access_key_last_used).then_output(|| GetAccessKeyLastUsedOutput::builder().build());
    let client = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&list_alice, &list_bob, &last_used]);
    // A budget of 4 IAM calls per second (and a burst of 4) in the account.
    let limiter = Arc::new(RateLimiter::new(4.0));
    let inventory = IamInventory::new(client).with_limits(limiter.clone(), fast_retries());
    let defaults = RunArgs::from_flags("http://queue", "bus", &[]).unwrap();
    let inventory = CachingInventory::new(inventory, limiter, &CacheSettings::from(&defaults));
    let sink = Arc::new(Kept::default());
    let accounts = Arc::new(keywatch::accounts::Accounts::only("111122223333"));
    let processor = Processor::new(inventory, sink.clone(), accounts, ProcessorSettings::from(&defaults));

    // alice: 1 listing + 2 look-ups out of the full bucket.
    assert_eq!(processor.handle_batch(&[Message::new("m1", create_body("alice"))]).await, [Disposition::Ack]);
    // bob right after: his listing takes the last token; no room for more.
    assert_eq!(processor.handle_batch(&[Message::new("m2", create_body("bob"))]).await, [Disposition::Ack]);
    assert_eq!((list_alice.num_calls(), list_bob.num_calls(), last_used.num_calls()), (1, 1, 2));
    // Once the budget has recovered, bob's next finding has its last use.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(processor.handle_batch(&[Message::new("m3", create_body("bob"))]).await, [Disposition::Ack]);
    assert_eq!(last_used.num_calls(), 4);

    let found = sink.0.lock().unwrap().clone();
    assert_eq!(found.len(), 3, "every event still has its finding");
    let recommended: Vec<Option<&str>> = found.iter().map(|f| f.recommended_key_to_deactivate.as_deref()).collect();
    // Never used keys: the newest is named, when both last uses are known.
    assert!(recommended[0].is_some() && recommended[1].is_none() && recommended[2].is_some(), "{recommended:?}");
    assert!(found.iter().all(|f| f.status == keywatch::finding::Status::Failed && f.active_key_count == 2));
    let known = |i: usize| found[i].active_keys.iter().map(|k| k.last_use_known).collect::<Vec<_>>();
    assert_eq!((known(0), known(1), known(2)), (vec![true, true], vec![false, false], vec![true, true]));
}

/// A role that cannot be assumed (here: an STS endpoint that closes every
/// connection, a fault the emulator cannot produce) fails the call for
/// good at once, and the account's next calls fail without asking STS
/// again until a pause has passed; another account is not held back.
#[tokio::test]
async fn a_role_that_cannot_be_assumed_fails_at_once_and_spares_sts() {
    use keywatch::aws::iam::MemberRole;
    use std::sync::atomic::AtomicUsize;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    {
        let connections = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                connections.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new("test", "test", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let clients = keywatch::aws::Clients::new(&sdk, Duration::from_secs(1), "us-east-1");
    let role = MemberRole { name: "keywatch-member".into(), external_id: None, own_account_id: "111111111111".into(), accounts: 2 };
    let inventory =
        IamInventory::new(clients.iam()).with_limits(Arc::new(RateLimiter::new(0.0)), fast_retries()).with_member_role(clients.sts(), role);

    let first = inventory.list_keys("222222222222", "alice", None).await.unwrap_err();
    assert!(!first.is_retryable(), "{first}");
    assert!(matches!(&first, InventoryError::Aws(e) if e.code.as_deref() == Some("CredentialsError")), "{first:?}");
    let asked = connections.load(Ordering::SeqCst);
    assert!(asked >= 1, "STS was asked");

    let again = inventory.list_keys("222222222222", "bob", None).await.unwrap_err();
    assert!(matches!(&again, InventoryError::Aws(e) if e.code.as_deref() == Some("CredentialsBackoff")), "{again:?}");
    assert_eq!(connections.load(Ordering::SeqCst), asked, "STS not asked again during the pause");

    inventory.list_keys("333333333333", "carol", None).await.unwrap_err();
    assert!(connections.load(Ordering::SeqCst) > asked, "another account still asks");
}

/// A scan under throttling still completes: ListUsers pages (the emulator
/// ignores MaxItems, so pages are mocked) and throttled listings retried.
#[tokio::test]
async fn a_throttled_scan_still_completes_every_user() {
    use aws_sdk_iam::operation::list_users::ListUsersOutput;
    use aws_sdk_iam::types::User;
    use keywatch::exceptions::Exceptions;
    use keywatch::finding::{Severity, Status, ROOT_CONTROL_ID};
    use keywatch::scan::{Quiet, ScanSettings, Scanner};
    let user = |name: &str| {
        User::builder()
            .user_name(name)
            .path("/")
            .user_id(format!("AIDA{name}"))
            .arn(format!("arn:aws:iam::111122223333:user/{name}"))
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    };
    let page1 = mock!(aws_sdk_iam::Client::list_users)
        .match_requests(|r| r.marker().is_none())
        .then_output(move || ListUsersOutput::builder().users(user("alice")).is_truncated(true).marker("p2").build().unwrap());
    let page2 = mock!(aws_sdk_iam::Client::list_users)
        .match_requests(|r| r.marker() == Some("p2"))
        .then_output(move || ListUsersOutput::builder().users(user("bob")).is_truncated(false).build().unwrap());
    let throttled = mock!(aws_sdk_iam::Client::list_access_keys)
        .sequence()
        .error(|| {
            ListAccessKeysError::generic(aws_sdk_iam::error::ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build())
        })
        .times(2)
        .output(|| {
            ListAccessKeysOutput::builder()
                .access_key_metadata(key(&key_id("alice", 1)))
                .access_key_metadata(key(&key_id("alice", 2)))
                .build()
                .unwrap()
        })
        .output(|| ListAccessKeysOutput::builder().access_key_metadata(key(&key_id("bob", 1))).build().unwrap())
        .build();
    let last_used = mock!(aws_sdk_iam::Client::get_access_key_last_used).then_output(|| GetAccessKeyLastUsedOutput::builder().build());
    // The root user has a key, throttled once too.
    let summary = mock!(aws_sdk_iam::Client::get_account_summary)
        .sequence()
        .error(|| {
            aws_sdk_iam::operation::get_account_summary::GetAccountSummaryError::generic(
                aws_sdk_iam::error::ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build(),
            )
        })
        .output(|| {
            aws_sdk_iam::operation::get_account_summary::GetAccountSummaryOutput::builder()
                .summary_map(aws_sdk_iam::types::SummaryKeyType::AccountAccessKeysPresent, 1)
                .build()
        })
        .build();
    let client = mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&page1, &page2, &throttled, &last_used, &summary], |c| c
        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled()));
    let inventory = IamInventory::new(client).with_limits(Arc::new(RateLimiter::new(50.0)), fast_retries());
    let sink = Arc::new(Kept::default());
    let settings = ScanSettings { include_passed: true, last_use: true, users_in_flight: 1 };
    let summary =
        Scanner::new(Arc::new(inventory), sink.clone(), settings).scan_account("111122223333", &Exceptions::default(), &Quiet).await;
    assert!(summary.complete(), "{summary:?}");
    assert_eq!((summary.users_checked, summary.users_failing, summary.keys_active), (2, 1, 3));
    assert_eq!(summary.root_access_keys, Some(1));
    assert_eq!(throttled.num_calls(), 4, "two throttles retried, then both users listed");
    let found = sink.0.lock().unwrap().clone();
    let statuses: Vec<(&str, &str, Status)> = found.iter().map(|f| (f.control_id, f.user_name.as_str(), f.status)).collect();
    assert_eq!(statuses.len(), 3, "FAILED for alice, PASSED for bob, FAILED for the root user: {statuses:?}");
    assert!(statuses.contains(&(ROOT_CONTROL_ID, "<root>", Status::Failed)), "{statuses:?}");
    let root = found.iter().find(|f| f.control_id == ROOT_CONTROL_ID).unwrap();
    assert_eq!((root.severity, root.active_key_count), (Severity::Critical, 1));
    assert_eq!(root.user_arn, "arn:aws:iam::111122223333:root");
}
