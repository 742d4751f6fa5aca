//! Command-line interface definition.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "clearway", version, about = "Healthcare transaction ingestion: X12 005010, HL7 v2, FHIR R4")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a file (SNIP 1-2 for X12, then the claim edits of each
    /// accepted 837): exit 0 when every set is accepted (999), 1 when one is
    /// rejected, 2 usage or I/O error. Rejected claims are listed; they do
    /// not change the exit code.
    Validate {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        #[command(flatten)]
        codesets: CodesetArgs,
        /// Input file, or - for standard input.
        file: PathBuf,
    },
    /// Print the acknowledgement for a file.
    Ack {
        #[arg(long, value_enum)]
        kind: AckKind,
        /// Timestamp to stamp the acknowledgement with (RFC 3339, UTC); default now.
        #[arg(long)]
        time: Option<String>,
        #[command(flatten)]
        codesets: CodesetArgs,
        /// Input file, or - for standard input.
        file: PathBuf,
    },
    /// Import and list the dated code sets the claim edits use.
    Codesets {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: CodesetsCommand,
    },
    /// The claim edits: ids, SNIP types, severities, 277CA codes, sources.
    Edits {
        #[command(subcommand)]
        command: EditsCommand,
    },
    /// Run the service: HTTP and MLLP intake, the fast path and the workers.
    Serve(ServeArgs),
    /// Manage trading partners and their API keys.
    Partners {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: PartnersCommand,
    },
    /// Inspect and replay dead-lettered transactions.
    Dlq {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// HL7 v2 and FHIR routes (`[[routes]]`): which a message would take.
    Routes {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Subscribed systems (`[destinations.NAME]`): queues, dead letters,
    /// replay.
    Destinations {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: DestinationsCommand,
    },
    /// API keys and their roles (add, list, revoke), and the partners'
    /// encryption keys: versions, rotation, re-wrap, destruction and
    /// crypto-shredding.
    Keys {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The people who sign in to the operator console (`/console`):
    /// operators, auditors and admins.
    ConsoleUsers {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ConsoleUsersCommand,
    },
    /// The tamper-evident audit log: verify it, checkpoint it, print its
    /// verifier key.
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage the coverage the fast path answers eligibility from.
    Coverage {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: CoverageCommand,
    },
    /// Export what the pipeline recorded as hive-partitioned Parquet:
    /// incremental (only what the destination has not written), create-only,
    /// safe to rerun after a crash. The limited data set: no names,
    /// addresses or dates of birth; patient control numbers and member ids
    /// as keyed-hash tokens.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// A directory or s3://bucket/prefix (default analytics.destination,
        /// else <data_dir>/analytics; each destination has its own
        /// watermark). A date (YYYY-MM-DD) instead ends a bounded
        /// re-export's period, exclusive: `--from 2026-11-01 --to
        /// 2026-12-01 [--to DIR]`. (A directory named like a date: write
        /// ./2026-12-01.)
        #[arg(long, action = clap::ArgAction::Append)]
        to: Vec<String>,
        /// Re-export the partitions of the days from this date (YYYY-MM-DD,
        /// UTC, inclusive) to `--to DATE` (exclusive; default: tomorrow)
        /// from the kept change batches, whatever the destination has
        /// written; its watermark does not move. Files already there are
        /// kept (they have the same bytes).
        #[arg(long)]
        from: Option<String>,
        /// Write today's Tuva snapshot (`<destination>/tuva/<table>/
        /// snapshot_date=…/`) after the export, replacing one written
        /// earlier today (an export writes it once a day on its own).
        #[arg(long)]
        tuva_snapshot: bool,
        /// Print the run's figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a report over the exported Parquet (`clearway report list`
    /// names them). Exit 2 for an unknown report.
    Report {
        #[command(flatten)]
        store: StoreArgs,
        /// The report, or `list`.
        name: String,
        /// From this date (YYYY-MM-DD) or time (RFC 3339), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// To this date or time, exclusive.
        #[arg(long)]
        to: Option<String>,
        /// Only this submitter (tenant).
        #[arg(long)]
        partner: Option<String>,
        /// Only this payer (reports that have one).
        #[arg(long)]
        payer: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Where the Parquet is (default analytics.destination).
        #[arg(long)]
        source: Option<String>,
    },
    /// AWS backend tools.
    Aws {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AwsCommand,
    },
    /// Print deterministic synthetic transactions with fake PHI.
    Gen {
        #[arg(value_enum)]
        kind: GenKind,
        /// Claims, requests, members or messages in the interchange.
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// Code sets for the claim edits of `validate` and `ack`, read straight
/// from official files (the service reads imported ones instead).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CodesetArgs {
    /// An official code-set file (ICD-10-CM/PCS order file or tabular XML,
    /// HCPCS ANWEB, place-of-service CSV); repeat for more. Without any,
    /// only the edits that need no code set run (and the built-in place of
    /// service list).
    #[arg(long = "codeset")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CodesetsCommand {
    /// Import official releases (exit 0 imported, 1 a file refused,
    /// 2 usage or storage error): CMS/CDC ICD-10-CM order files
    /// (icd10cm_order_YYYY.txt) or tabular XML, ICD-10-PCS order files,
    /// HCPCS Level II ANWEB text files, a place-of-service CSV
    /// (code,name,effective,terminated). All or nothing: a bad row in any
    /// file imports none and lists every bad row. Running workers pick new
    /// releases up within `edits.codeset_refresh_secs`.
    Import {
        /// The code system, when the file names do not tell it.
        #[arg(long)]
        system: Option<String>,
        /// First date of service the release applies to (YYYY-MM-DD), when
        /// the file names do not tell it (ICD-10: 1 October of the year
        /// before the fiscal year).
        #[arg(long)]
        effective: Option<String>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the imported releases.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EditsCommand {
    /// Print the catalog.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Auto,
    X12,
    Hl7,
    Fhir,
    Ncpdp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckKind {
    Ta1,
    #[value(name = "999")]
    Ack999,
    #[value(name = "277ca")]
    Ack277ca,
    Hl7,
    Fhir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenKind {
    #[value(name = "837p")]
    P837,
    #[value(name = "837i")]
    I837,
    #[value(name = "270")]
    E270,
    #[value(name = "276")]
    S276,
    #[value(name = "834")]
    E834,
    #[value(name = "hl7-adt")]
    Hl7Adt,
    /// NCPDP D.0 B1 claims (one transmission per claim, one per line).
    #[value(name = "b1")]
    B1,
}

/// Where the configuration and the data live (shared by the subcommands
/// that open the store).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Configuration file (TOML); `CLEARWAY__SECTION__KEY` variables override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (default ./var, or server.data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Backend (default backend.kind, else local). `aws` reads the SDK's
    /// standard settings: AWS_REGION, credentials, AWS_ENDPOINT_URL.
    #[arg(long, global = true, value_enum)]
    pub backend: Option<BackendArg>,
}

#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Say which routes each message of a file (HL7 v2, one message or a
    /// batch; or a FHIR resource) would take, and why the others would not.
    /// Exit 0 when every message goes somewhere, 1 when one goes nowhere.
    Test {
        /// The partner the file would come from (routes may filter on it).
        #[arg(long, default_value = "-")]
        partner: String,
        #[arg(long)]
        json: bool,
        /// Input file, or - for standard input.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DestinationsCommand {
    /// Every destination with its queue as its deliverer last published it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A destination's dead letters, oldest first.
    DeadLetters {
        name: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put a destination's dead letters back at the tail of its queue.
    Replay {
        name: String,
        /// Count them only.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleUsersCommand {
    /// Create an account; prints its generated password, alone on
    /// standard output, once.
    Add {
        /// 1-64 of a-z 0-9 . _ - (a sign-in name, not a person's full name).
        #[arg(long)]
        name: String,
        /// operator, auditor or admin.
        #[arg(long)]
        role: String,
        /// May see PHI bodies (operators only).
        #[arg(long)]
        phi_view: bool,
        /// May declare break-glass (operators only).
        #[arg(long)]
        break_glass: bool,
    },
    /// List accounts: name, role, grants, state (never a password).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set an account's password, read from standard input (12-256
    /// characters), and enable it again.
    Password {
        #[arg(long)]
        name: String,
    },
    /// Disable an account: its sessions end at their next request.
    Disable {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue an API key with a role; prints the key, alone on standard
    /// output, once. A submitter's key is for an existing partner; an
    /// operator's, auditor's or admin's names the person or service.
    Add {
        /// submitter, operator, auditor or admin.
        #[arg(long)]
        role: String,
        /// Whose key: the partner (submitter) or the person or service.
        #[arg(long)]
        principal: String,
        /// May read PHI bodies (operators only).
        #[arg(long)]
        phi_view: bool,
        /// May declare break-glass (operators only).
        #[arg(long)]
        break_glass: bool,
        /// A note for people (no secrets, no PHI).
        #[arg(long)]
        label: Option<String>,
    },
    /// List API keys: id, holder, role, grants (never the keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke one API key by its id (`keys list`).
    Revoke {
        #[arg(long)]
        id: String,
    },
    /// Each partner's key versions and how many stored objects name each.
    Status {
        /// One partner (default: every partner).
        #[arg(long)]
        partner: Option<String>,
        /// Also open every object and count those that do not open.
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make a new key version active for new writes.
    Rotate {
        /// One partner (default: every partner not shredded).
        #[arg(long)]
        partner: Option<String>,
        /// Wrap the partner's new version, and every later one, with this
        /// AWS KMS key (id, ARN or alias) instead of the root key (AWS
        /// backend; needs --partner).
        #[arg(long, requires = "partner")]
        kms_key_id: Option<String>,
    },
    /// Re-wrap stored objects' data keys onto the active version (headers
    /// only; resumable; safe to interrupt).
    Rewrap {
        /// One partner (default: every partner not shredded).
        #[arg(long)]
        partner: Option<String>,
        /// At most this many objects a second (0: no limit).
        #[arg(long, default_value_t = 200)]
        max_per_second: u32,
    },
    /// Destroy a version no stored object names any more (without
    /// --version: every such version but the active one).
    Destroy {
        #[arg(long)]
        partner: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Destroy every key version of a partner and revoke it: its payloads
    /// and stored acknowledgements can never be opened again.
    Shred {
        #[arg(long)]
        partner: String,
        /// The partner id again, to confirm.
        #[arg(long)]
        confirm: Option<String>,
        /// Also schedule the deletion of the partner's KMS key after this
        /// many days (7 to 30): the erasure then reaches every backup.
        /// Leave it out when Terraform manages the key (remove the partner
        /// from `partner_kms_keys` instead).
        #[arg(long, value_parser = clap::value_parser!(u32).range(7..=30))]
        schedule_kms_key_deletion_days: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Local,
    Aws,
}

impl BackendArg {
    pub fn name(self) -> &'static str {
        match self {
            BackendArg::Local => "local",
            BackendArg::Aws => "aws",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// HTTP listen address (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// MLLP listen address (default 127.0.0.1:2575); needs mllp.partner.
    #[arg(long)]
    pub mllp_listen: Option<String>,
    /// The partner MLLP submissions are recorded under.
    #[arg(long)]
    pub mllp_partner: Option<String>,
    /// What this process runs.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Log line format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Intake (HTTP, MLLP) and workers.
    All,
    /// HTTP and MLLP intake and the read API only.
    Intake,
    /// Workers and webhook delivery only (health and metrics still served).
    Worker,
}

impl Role {
    /// The `clearway.role` of exported spans.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Intake => "intake",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PartnersCommand {
    /// Add a partner; prints its API key, alone on standard output, once.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// May list and replay dead letters over HTTP.
        #[arg(long)]
        operator: bool,
    },
    /// List partners (ids, names, status; never keys).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a partner's API key.
    Revoke {
        #[arg(long)]
        id: String,
    },
    /// Bind a client certificate to the partner (two slots, for rotation):
    /// over TLS its API key then needs that certificate, and an MLLP-over-TLS
    /// connection presenting it is the partner's. Prints the fingerprint.
    BindCert {
        #[arg(long)]
        id: String,
        /// The certificate (PEM) to bind.
        #[arg(long, conflicts_with = "fingerprint")]
        cert: Option<PathBuf>,
        /// Its SHA-256 fingerprint (hex, colons allowed).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Unbind a client certificate from the partner.
    UnbindCert {
        #[arg(long)]
        id: String,
        #[arg(long)]
        fingerprint: String,
    },
    /// Set the partner's webhook URL; prints the new signing secret, alone on standard output.
    Webhook {
        #[arg(long)]
        id: String,
        #[arg(long)]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the whole log from its events: every stored node and
    /// every checkpoint, the log's own and those given with --checkpoint,
    /// must agree and be signed by the log's key. Exit 0 if it verifies, 1
    /// if it does not (tampered, truncated, rolled back, forked).
    Verify {
        /// A file of checkpoints kept outside the log (an auditor's copy of
        /// `audit-checkpoints.log`, or one `audit checkpoint` printed);
        /// repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// The log's verifier key (`audit key` prints it), when checking a
        /// copy without the signing key file.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Sign a checkpoint of the log as it stands and print it.
    Checkpoint,
    /// Print the log's verifier key (name+id+key), for auditors to keep.
    Key,
}

#[derive(Debug, Subcommand)]
pub enum AwsCommand {
    /// Create the bucket, queues (with the dead-letter redrive), topic and
    /// table under the configured names, if they do not exist; prints them
    /// as JSON. Uses the SDK's configuration (AWS_REGION, credentials,
    /// AWS_ENDPOINT_URL).
    Bootstrap,
}

#[derive(Debug, Subcommand)]
pub enum CoverageCommand {
    /// Import members from an X12 834, or from a CSV with the header
    /// payer_id,member_id,last_name,first_name,birth_date,plan,begin,end
    /// (dates YYYY-MM-DD; end may be empty).
    Import {
        /// The 834 or CSV file, or - for standard input.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        #[arg(long)]
        partner: Option<String>,
        /// Only those whose claims name this payer id.
        #[arg(long)]
        payer: Option<String>,
        /// Only those dead-lettered at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter.
    Show { id: String },
    /// Re-queue dead letters: one by id, or every one matching --partner/--payer/--since.
    Replay {
        /// Transaction id; omit to replay every dead letter matching the filters.
        id: Option<String>,
        #[arg(long)]
        partner: Option<String>,
        /// Only those whose claims name this payer id.
        #[arg(long)]
        payer: Option<String>,
        #[arg(long)]
        since: Option<String>,
        /// Say what would be replayed without doing it.
        #[arg(long)]
        dry_run: bool,
    },
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}
