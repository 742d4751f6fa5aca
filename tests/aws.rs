//! `clearway aws bootstrap` against the local AWS-protocol server that
//! `scripts/test` starts (`CLEARWAY_TEST_AWS_ENDPOINT`): it creates every
//! resource, is idempotent, and takes the SDK's standard configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn bootstrap_creates_everything_and_is_idempotent() {
    let endpoint = std::env::var("CLEARWAY_TEST_AWS_ENDPOINT")
        .expect("CLEARWAY_TEST_AWS_ENDPOINT: the URL of a moto_server (scripts/test starts one)");
    let scratch = tempfile::tempdir().unwrap();
    let suffix = format!("{}", std::process::id());
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_clearway"))
            .args(["aws", "bootstrap", "--data-dir"])
            .arg(scratch.path())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("CLEARWAY__BACKEND__BUCKET", format!("cw-payloads-{suffix}"))
            .env("CLEARWAY__BACKEND__QUEUE", format!("cw-work-{suffix}"))
            .env("CLEARWAY__BACKEND__DEAD_LETTER_QUEUE", format!("cw-work-dlq-{suffix}"))
            .env("CLEARWAY__BACKEND__TOPIC", format!("cw-acks-{suffix}"))
            .env("CLEARWAY__BACKEND__TABLE", format!("cw-state-{suffix}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["bucket"], format!("cw-payloads-{suffix}"));
    assert!(first["queueUrl"].as_str().unwrap().ends_with(&format!("cw-work-{suffix}")), "{first}");
    assert!(first["deadLetterQueueUrl"].as_str().unwrap().ends_with(&format!("cw-work-dlq-{suffix}")), "{first}");
    assert!(first["topicArn"].as_str().unwrap().ends_with(&format!(":cw-acks-{suffix}")), "{first}");
    assert_eq!(first["table"], format!("cw-state-{suffix}"));
    assert_eq!(run(), first, "a second bootstrap finds the same resources");
}
