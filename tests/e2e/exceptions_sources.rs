//! Where the approved exceptions come from, and how they are kept current:
//! a file polled by content (a Kubernetes ConfigMap's symlink swap
//! included), an SSM parameter by its version, an S3 object by its ETag; a
//! broken version keeps the previous set and is reported once.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use keywatch::aws::s3::S3Object;
use keywatch::aws::ssm::SsmParameter;
use keywatch::aws::Clients;
use keywatch::exceptions::Exceptions;
use keywatch::exceptions_source::{keep_current, ExceptionsSource, FileSource, Refresh, Watch};
use tokio_util::sync::CancellationToken;

trials! {
    current a_configmap_symlink_swap_is_seen_and_a_broken_version_keeps_the_previous_set,
    current a_file_edited_in_place_is_reloaded_when_its_content_changes,
    current the_reload_loop_applies_a_new_version_within_a_poll,
    multi an_ssm_parameter_is_reloaded_when_its_version_changes,
    multi an_s3_object_is_reloaded_when_its_etag_changes,
}

fn entries(users: &[&str]) -> String {
    let mut text = String::from("exceptions:\n");
    for u in users {
        text.push_str(&format!("  - {{account: \"*\", user: \"{u}\", reason: r, owner: o@example.com, expires: {}}}\n", in_days(30)));
    }
    text
}

const BROKEN: &str = "exceptions:\n  - {account: \"*\", user: x, reason: r, expires: 2999-01-01}\n";

fn users(e: &Exceptions) -> Vec<String> {
    e.entries.iter().map(|x| x.user.clone()).collect()
}

/// A ConfigMap volume as the kubelet writes it: the data in a timestamped
/// directory, `..data` a symlink to it, and each key a symlink through
/// `..data`. An update writes a new directory and renames a new `..data`
/// symlink over the old one, in one atomic step.
struct ConfigMapVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl ConfigMapVolume {
    fn new(text: &str) -> ConfigMapVolume {
        let mut v = ConfigMapVolume { dir: tempfile::tempdir().unwrap(), generation: 0 };
        v.update(text);
        std::os::unix::fs::symlink("..data/exceptions.yaml", v.dir.path().join("exceptions.yaml")).unwrap();
        v
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("exceptions.yaml")
    }

    fn update(&mut self, text: &str) {
        self.generation += 1;
        let old = format!("..2026_11_29_13_00_{:02}.{}", self.generation - 1, self.generation - 1);
        let new = format!("..2026_11_29_13_00_{:02}.{}", self.generation, self.generation);
        let root = self.dir.path();
        std::fs::create_dir(root.join(&new)).unwrap();
        std::fs::write(root.join(&new).join("exceptions.yaml"), text).unwrap();
        std::os::unix::fs::symlink(&new, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        if root.join(&old).exists() {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }
}

async fn reloaded(watch: &mut Watch) -> Exceptions {
    match watch.refresh(false).await {
        Refresh::Reloaded(e) => e,
        other => panic!("expected a reload, got {other:?}"),
    }
}

async fn kept(watch: &mut Watch, force: bool) -> String {
    match watch.refresh(force).await {
        Refresh::Kept(e) => e.to_string(),
        other => panic!("expected the previous exceptions kept, got {other:?}"),
    }
}

async fn unchanged(watch: &mut Watch) {
    let r = watch.refresh(false).await;
    assert!(matches!(r, Refresh::Unchanged), "expected no change, got {r:?}");
}

async fn a_configmap_symlink_swap_is_seen_and_a_broken_version_keeps_the_previous_set() {
    let mut volume = ConfigMapVolume::new(&entries(&["alice"]));
    let mut watch = Watch::new(Arc::new(FileSource::new(volume.path())));
    assert_eq!(users(&watch.load().await.unwrap()), ["alice"]);
    unchanged(&mut watch).await;

    volume.update(&entries(&["alice", "bob"]));
    assert_eq!(users(&reloaded(&mut watch).await), ["alice", "bob"]);
    unchanged(&mut watch).await;

    volume.update(BROKEN);
    let err = kept(&mut watch, false).await;
    assert!(err.contains("entry 1") && err.contains("owner"), "{err}");
    // Reported once: the broken version is not loaded again on every look...
    unchanged(&mut watch).await;
    // ...unless asked to (SIGHUP).
    kept(&mut watch, true).await;

    volume.update(&entries(&["carol"]));
    assert_eq!(users(&reloaded(&mut watch).await), ["carol"]);
}

async fn a_file_edited_in_place_is_reloaded_when_its_content_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exceptions.toml");
    std::fs::write(&path, format!("[[exceptions]]\naccount='*'\nuser='dave'\nreason='r'\nowner='@o'\nexpires={}\n", in_days(30))).unwrap();
    let mut watch = Watch::new(Arc::new(FileSource::new(path.clone())));
    assert_eq!(users(&watch.load().await.unwrap()), ["dave"]);
    // The same content written again is no change.
    std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    unchanged(&mut watch).await;
    std::fs::write(&path, "exceptions = []\n").unwrap();
    assert!(reloaded(&mut watch).await.entries.is_empty());
    // A file that disappears is unreadable: the previous set stays, and it
    // is reported on each look until the file is back.
    std::fs::remove_file(&path).unwrap();
    assert!(kept(&mut watch, false).await.contains("cannot read exceptions file"));
    assert!(kept(&mut watch, false).await.contains("cannot read exceptions file"));
    std::fs::write(&path, "exceptions = []\n").unwrap();
    unchanged(&mut watch).await;
}

async fn the_reload_loop_applies_a_new_version_within_a_poll() {
    let mut volume = ConfigMapVolume::new(&entries(&["erin"]));
    let mut watch = Watch::new(Arc::new(FileSource::new(volume.path())));
    watch.load().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn(keep_current(watch, Some(Duration::from_millis(50)), false, move |e| tx.send(e).unwrap(), stop.clone()));

    volume.update(BROKEN);
    volume.update(&entries(&["erin", "frank"]));
    let applied = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("reloaded within 5 s").unwrap();
    assert_eq!(users(&applied), ["erin", "frank"]);
    stop.cancel();
    task.await.unwrap();
    assert!(rx.try_recv().is_err(), "applied once");
}

async fn emulator_clients(moto: &Moto) -> Clients {
    Clients::new(&moto.sdk_config().await, Duration::from_secs(1), "us-east-1")
}

async fn an_ssm_parameter_is_reloaded_when_its_version_changes() {
    let moto = Moto::start();
    let clients = emulator_clients(&moto).await;
    let name = "/keywatch/exceptions";
    let put = |text: String| {
        let ssm = clients.ssm();
        async move {
            ssm.put_parameter()
                .name(name)
                .value(text)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send()
                .await
                .unwrap()
                .version
        }
    };
    assert_eq!(put(entries(&["gina"])).await, 1);
    let source = SsmParameter::new(clients.ssm(), name.to_string());
    assert_eq!(source.origin(), "ssm:/keywatch/exceptions");
    let mut watch = Watch::new(Arc::new(source));
    assert_eq!(users(&watch.load().await.unwrap()), ["gina"]);
    unchanged(&mut watch).await;

    put(entries(&["gina", "hugo"])).await;
    assert_eq!(users(&reloaded(&mut watch).await), ["gina", "hugo"]);
    unchanged(&mut watch).await;

    put(BROKEN.to_string()).await;
    let err = kept(&mut watch, false).await;
    assert!(err.contains("ssm:/keywatch/exceptions") && err.contains("entry 1"), "{err}");
    unchanged(&mut watch).await;

    put(entries(&["ivan"])).await;
    assert_eq!(users(&reloaded(&mut watch).await), ["ivan"]);

    // A parameter that does not exist stops start-up with its name.
    let mut missing = Watch::new(Arc::new(SsmParameter::new(clients.ssm(), "/keywatch/none".into())));
    let err = missing.load().await.unwrap_err().to_string();
    assert!(err.contains("ssm:/keywatch/none") && err.contains("ParameterNotFound"), "{err}");
}

async fn an_s3_object_is_reloaded_when_its_etag_changes() {
    let moto = Moto::start();
    let clients = emulator_clients(&moto).await;
    let bucket = "keywatch-config";
    clients.s3().create_bucket().bucket(bucket).send().await.unwrap();
    let key = "keywatch/exceptions.yaml";
    let put = |text: String| {
        let s3 = clients.s3();
        async move {
            s3.put_object().bucket(bucket).key(key).body(text.into_bytes().into()).send().await.unwrap();
        }
    };
    put(entries(&["judy"])).await;
    // The emulator's buckets are its default account's.
    let source = S3Object::new(clients.s3(), bucket.into(), key.into(), "123456789012".into());
    assert_eq!(source.origin(), "s3://keywatch-config/keywatch/exceptions.yaml");
    let mut watch = Watch::new(Arc::new(source));
    assert_eq!(users(&watch.load().await.unwrap()), ["judy"]);
    unchanged(&mut watch).await;

    put(entries(&["judy", "kim"])).await;
    assert_eq!(users(&reloaded(&mut watch).await), ["judy", "kim"]);
    unchanged(&mut watch).await;

    put(BROKEN.to_string()).await;
    let err = kept(&mut watch, false).await;
    assert!(err.contains("s3://keywatch-config/keywatch/exceptions.yaml") && err.contains("entry 1"), "{err}");
    unchanged(&mut watch).await;

    // An object that is deleted is unreadable: the previous set stays.
    clients.s3().delete_object().bucket(bucket).key(key).send().await.unwrap();
    assert!(kept(&mut watch, false).await.contains("HeadObject"));

    put(entries(&["lena"])).await;
    assert_eq!(users(&reloaded(&mut watch).await), ["lena"]);
}
