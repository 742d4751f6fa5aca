//! Where exported files go: a local directory or an S3 prefix, through
//! one `object_store` code path. Writes are create-only: a file that
//! already exists is left as it is (a rerun of a batch writes the same
//! bytes under the same name).

use clearway_core::{ErrorKind, PortError, PortResult};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

/// An export destination.
#[derive(Debug, Clone)]
pub struct Destination {
    /// As configured (`/var/lib/clearway/analytics`, `s3://bucket/prefix`).
    pub address: String,
    /// The URL DataFusion registers the store under (`file:///`,
    /// `s3://bucket`).
    pub url: Url,
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store (no leading or trailing slash).
    pub prefix: String,
    /// The local root, for a directory (fsync'd after each file).
    local: Option<PathBuf>,
}

/// S3 settings beyond the bucket (endpoint for moto, KMS key).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// SSE-KMS key id; without it the bucket's default encryption applies.
    pub kms_key_id: Option<String>,
}

fn err(what: &'static str) -> impl Fn(object_store::Error) -> PortError {
    move |e| match e {
        object_store::Error::NotFound { .. } => PortError::with_cause(ErrorKind::NotFound, what, e),
        _ => PortError::with_cause(ErrorKind::Unavailable, what, e),
    }
}

impl Destination {
    /// A directory (created if needed) or `s3://bucket/prefix`.
    pub fn parse(address: &str, s3: &S3Options) -> PortResult<Self> {
        if let Some(rest) = address.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(PortError::new(ErrorKind::InvalidInput, "analytics destination: s3:// needs a bucket"));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            }
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let Some(k) = &s3.kms_key_id {
                b = b.with_sse_kms_encryption(k);
            }
            let store =
                b.build().map_err(|e| PortError::with_cause(ErrorKind::InvalidInput, "analytics S3 store", e))?;
            let url = Url::parse(&format!("s3://{bucket}"))
                .map_err(|e| PortError::with_cause(ErrorKind::InvalidInput, "analytics S3 bucket name", e))?;
            return Ok(Destination {
                address: address.to_string(),
                url,
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                local: None,
            });
        }
        let dir = PathBuf::from(address);
        std::fs::create_dir_all(&dir)
            .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "create the analytics directory", e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "the analytics directory", e))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "the analytics directory", e))?;
        let url = Url::from_directory_path(&dir)
            .map_err(|_| PortError::new(ErrorKind::InvalidInput, "the analytics directory is not an absolute path"))?;
        Ok(Destination {
            address: address.to_string(),
            url,
            store: Arc::new(store),
            prefix: String::new(),
            local: Some(dir),
        })
    }

    /// A stable id of the destination, for its watermark (no address in
    /// the clear: a bucket or path may name a customer).
    pub fn id(&self) -> String {
        let canonical = match &self.local {
            Some(dir) => format!("file://{}", dir.display()),
            None => format!("{}/{}", self.url.as_str().trim_end_matches('/'), self.prefix),
        };
        clearway_core::crypto::sha256_hex(canonical.as_bytes())[..32].to_string()
    }

    /// The object path of `relative` (`v1/claim/received_date=…/part-….parquet`).
    pub fn path(&self, relative: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// The URL of a table's directory, for readers.
    pub fn table_url(&self, table: &str) -> String {
        match &self.local {
            Some(dir) => format!("{}/v1/{table}/", dir.display()),
            None => format!("{}/{}v1/{table}/", self.url.as_str().trim_end_matches('/'), prefix_slash(&self.prefix)),
        }
    }

    /// Whether a file exists.
    pub async fn exists(&self, relative: &str) -> PortResult<bool> {
        match object_store::ObjectStoreExt::head(&self.store, &self.path(relative)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(err("look for an analytics file")(e)),
        }
    }

    /// Writes a file, replacing any of that name (a derived file, such as a
    /// Tuva snapshot; readers see the old or the new, whole); durable when
    /// it returns.
    pub async fn replace(&self, relative: &str, bytes: bytes::Bytes) -> PortResult<()> {
        let path = self.path(relative);
        let opts = PutOptions { mode: PutMode::Overwrite, ..Default::default() };
        self.store.put_opts(&path, PutPayload::from(bytes), opts).await.map_err(err("write an analytics file"))?;
        self.fsync(relative).await
    }

    async fn fsync(&self, relative: &str) -> PortResult<()> {
        if let Some(root) = &self.local {
            // object_store 0.13 never fsyncs a local file: do it, and its
            // directories, before the watermark may move past it.
            let root = root.clone();
            let rel = relative.to_string();
            tokio::task::spawn_blocking(move || fsync_tree(&root, &rel))
                .await
                .map_err(|e| PortError::with_cause(ErrorKind::Internal, "fsync task", e))?
                .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "fsync an analytics file", e))?;
        }
        Ok(())
    }

    /// Writes a file unless it exists; durable when it returns. Returns
    /// whether this call created it.
    pub async fn create(&self, relative: &str, bytes: bytes::Bytes) -> PortResult<bool> {
        let path = self.path(relative);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        let created = match self.store.put_opts(&path, PutPayload::from(bytes), opts).await {
            Ok(_) => true,
            Err(object_store::Error::AlreadyExists { .. }) => false,
            Err(e) => return Err(err("write an analytics file")(e)),
        };
        self.fsync(relative).await?;
        Ok(created)
    }
}

fn prefix_slash(prefix: &str) -> String {
    if prefix.is_empty() { String::new() } else { format!("{prefix}/") }
}

fn fsync_tree(root: &std::path::Path, relative: &str) -> std::io::Result<()> {
    let file = root.join(relative);
    std::fs::File::open(&file)?.sync_all()?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}
