//! What the AWS backend's test suites share: the SDK pointed at the local
//! AWS-protocol server, and unique resource names.

/// The SDK configuration for the local server (`moto_server`):
/// `scripts/test` starts it and sets `CLEARWAY_TEST_AWS_ENDPOINT`; without
/// it these tests fail (they are the AWS lane, not optional).
pub async fn config() -> aws_config::SdkConfig {
    let endpoint = std::env::var("CLEARWAY_TEST_AWS_ENDPOINT")
        .expect("CLEARWAY_TEST_AWS_ENDPOINT: the URL of a moto_server (scripts/test starts one)");
    // These settings only point the SDK at the local server with its fake
    // credentials.
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", time::OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000_000)
}
