//! `clearway aws bootstrap` against the local AWS-protocol server that
//! `scripts/test` starts (`CLEARWAY_TEST_AWS_ENDPOINT`): it creates every
//! resource, is idempotent, and takes the SDK's standard configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::Scratch;

#[test]
fn bootstrap_creates_everything_and_is_idempotent() {
    // `Scratch::aws` bootstraps its own resources once; the runs here are
    // the second and third.
    let scratch = Scratch::aws();
    let run = || {
        let out = scratch.command().args(["aws", "bootstrap", "--data-dir"]).arg(scratch.data()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let name = |k: &str| scratch.env_value(k);
    let first = run();
    assert_eq!(first["bucket"], name("CLEARWAY__BACKEND__BUCKET"));
    assert!(first["queueUrl"].as_str().unwrap().ends_with(&name("CLEARWAY__BACKEND__QUEUE")), "{first}");
    let dlq = name("CLEARWAY__BACKEND__DEAD_LETTER_QUEUE");
    assert!(first["deadLetterQueueUrl"].as_str().unwrap().ends_with(&dlq), "{first}");
    let topic = format!(":{}", name("CLEARWAY__BACKEND__TOPIC"));
    assert!(first["topicArn"].as_str().unwrap().ends_with(&topic), "{first}");
    assert_eq!(first["table"], name("CLEARWAY__BACKEND__TABLE"));
    assert_eq!(run(), first, "another bootstrap finds the same resources");
}
