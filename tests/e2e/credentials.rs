//! Credentials as people have them: a profile whose credentials come from
//! an external program (`credential_process`), with no keys in the
//! environment, against the emulator through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::*;

trials! {
    multi a_credential_process_profile_supplies_the_credentials,
}

const T: Duration = Duration::from_secs(30);

async fn a_credential_process_profile_supplies_the_credentials() {
    let moto = Moto::start();
    let p = Pipeline::create(&moto.sdk_config().await, 5).await;
    let dir = tempfile::tempdir().unwrap();

    // The program prints the credentials as the AWS CLI expects them and
    // leaves a mark, so the test knows it was asked.
    let marker = dir.path().join("asked");
    let program = dir.path().join("print-credentials");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\necho asked >> '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIAPROCESSEXAMPLE01\", \"SecretAccessKey\": \"process-secret\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, format!("[profile keywatch-test]\nregion = us-east-1\ncredential_process = {}\n", program.display())).unwrap();
    let config = config.to_str().unwrap().to_string();
    // An empty credentials file: nothing from the machine's own.
    let no_credentials_file = dir.path().join("credentials");
    std::fs::write(&no_credentials_file, "").unwrap();
    let no_credentials_file = no_credentials_file.to_str().unwrap().to_string();

    let worker = Worker::start_without(
        &moto,
        &p,
        &[("AWS_CONFIG_FILE", &config), ("AWS_SHARED_CREDENTIALS_FILE", &no_credentials_file), ("AWS_PROFILE", "keywatch-test")],
        &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    );
    let keys = p.user_with_keys("nora", 2).await;
    p.put_cloudtrail(&create_key_event("evt-process", "admin", "nora", &keys[1])).await;
    let found = p.findings(1, T).await;
    assert_eq!(found.len(), 1, "no finding with credentials from credential_process:\n{}", worker.logs());
    assert_eq!(found[0]["detail"]["user_name"], "nora");
    assert_eq!(found[0]["detail"]["status"], "FAILED");
    assert!(marker.exists(), "the credential process was never run:\n{}", worker.logs());
}
