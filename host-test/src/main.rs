//! `misp-enrich`: enrich Cowrie (or any NDJSON) logs with MISP context.
//!
//! A thin layer over the library: parse flags, assemble the configuration,
//! pick the upstream (real MISP or the embedded fake), run the pipeline and
//! print the summary. For Fluent Bit, `sync` takes a MISP snapshot with the
//! core's sync logic over the same HTTP client, and `fluent-bit-module`
//! writes out the embedded filter module. Errors carry context with
//! `anyhow`; bad configuration exits with 2, anything else that stops a run
//! with 1.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWrite;
use tokio::runtime::Handle;

use misp_enrich_host::embedded;
use misp_enrich_host::fake::server::{self, FakeServer};
use misp_enrich_host::fake::{Dataset, FakeMisp};
use misp_enrich_host::fluent_bit::FILTER_FUNCTION;
use misp_enrich_host::outbound::client::NetworkClient;
use misp_enrich_host::outbound::{Authority, Outbound, TimeoutCaps, Upstream, tls};
use misp_enrich_host::pipeline::{self, Batching, Input, PipelineError, follow::StopFlag};
use misp_enrich_host::runtime::{HostError, Runtime};
use misp_enrich_host::secret::Secret;
use misp_enrich_host::settings::{self, Settings, SettingsError};
use misp_enrich_host::sync::{NetworkTransport, write_atomically};

/// Attach MISP threat-intel context to honeypot log records.
#[derive(Debug, Parser)]
#[command(name = "misp-enrich", version)]
struct Cli {
    /// More logging on stderr (-v: decisions, -vv: every call).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay the bundled Cowrie log against a built-in fake MISP.
    Demo(DemoArgs),
    /// Enrich NDJSON records from a file or stdin.
    Run(Box<RunArgs>),
    /// Take a snapshot of MISP's address indicators for the Fluent Bit module.
    Sync(SyncArgs),
    /// Write out the Fluent Bit filter module embedded in this binary.
    FluentBitModule(ModuleArgs),
    /// Serve a fake MISP on a loopback address (for tests and trials).
    #[command(hide = true)]
    FakeMisp(FakeArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Load this component instead of the embedded one.
    #[arg(long, value_name = "PATH")]
    component: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct FakeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8443.
    #[arg(long)]
    listen: SocketAddr,
    /// The dataset to serve (see fixtures/README.md for the format).
    #[arg(long, value_name = "FILE")]
    dataset: PathBuf,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// Where to write the snapshot; replaced atomically, and left as it was
    /// when the sync fails.
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// MISP base URL, e.g. `https://misp.example.org`.
    #[arg(long)]
    misp_url: Option<String>,
    /// `--config` takes `run`'s file; only misp_url, attribute_types,
    /// enforce_warninglist and connect_timeout_ms matter to a sync.
    #[command(flatten)]
    access: MispAccess,
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// The wait for each whole MISP answer. A page carries up to 5,000
    /// attributes, so this is longer than run's response_timeout_ms, which
    /// a sync does not use.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    response_timeout_secs: u64,
}

/// How `run` and `sync` reach MISP: settings file, key and trust.
#[derive(Debug, Args)]
struct MispAccess {
    /// Read settings from this JSON file; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read the API key from this file (otherwise from MISP_API_KEY).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// Also trust the certificates in this PEM file (a private CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ModuleArgs {
    /// Where to write the module (`wasm_path` in Fluent Bit's configuration).
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputStyle {
    Nested,
    Dotted,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Input file; `-` or nothing reads stdin.
    input: Option<PathBuf>,
    /// Output file; stdout when absent.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Keep reading INPUT as it grows, across rotation (like `tail -F`).
    #[arg(long, requires = "input")]
    follow: bool,
    #[command(flatten)]
    access: MispAccess,
    /// Load this component instead of the embedded one.
    #[arg(long, value_name = "PATH")]
    component: Option<PathBuf>,
    /// Records per enrich-batch call.
    #[arg(long, default_value_t = Batching::default().batch_size)]
    batch_size: usize,
    /// Longest wait (ms) for a batch to fill before it is sent anyway.
    #[arg(long, default_value_t = Batching::default().linger.as_millis() as u64)]
    batch_wait_ms: u64,

    /// MISP base URL, e.g. `https://misp.example.org`.
    #[arg(long)]
    misp_url: Option<String>,
    /// Base of misp.event_url (default: misp_url).
    #[arg(long)]
    event_url_base: Option<String>,
    /// Field holding the source address (repeatable; replaces the defaults).
    #[arg(long = "source-field", value_name = "FIELD")]
    source_fields: Vec<String>,
    #[arg(long)]
    cache_capacity: Option<u64>,
    #[arg(long)]
    hit_ttl_secs: Option<u64>,
    #[arg(long)]
    miss_ttl_secs: Option<u64>,
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    #[arg(long)]
    response_timeout_ms: Option<u64>,
    /// `nested` ("misp": {...}) or `dotted` ("misp.event_id": ...).
    #[arg(long, value_enum)]
    output_style: Option<OutputStyle>,
    #[arg(long)]
    hit_tag: Option<String>,
    #[arg(long)]
    failure_tag: Option<String>,
    /// MISP attribute type to search (repeatable; replaces the defaults).
    #[arg(long = "attribute-type", value_name = "TYPE")]
    attribute_types: Vec<String>,
    /// Ask MISP to drop warninglisted attributes.
    #[arg(long)]
    enforce_warninglist: bool,
    /// Never look up sources in this CIDR (repeatable).
    #[arg(long = "skip-network", value_name = "CIDR")]
    skip_networks: Vec<String>,
}

/// An error that deserves exit code 2: the run never started.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct BadConfig(anyhow::Error);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("misp-enrich: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`misp-enrich demo | head`): nothing to report.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("misp-enrich: {err:#}");
            if err.is::<BadConfig>() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<PipelineError>(),
        Some(PipelineError::Write(io)) if io.kind() == std::io::ErrorKind::BrokenPipe
    )
}

fn init_logging(verbose: u8) {
    // Quiet by default: warnings and errors only, so a pipeline's stderr
    // stays readable; RUST_LOG still overrides.
    let level = match verbose {
        0 => "warn",
        1 => "misp_enrich=debug,misp_enrich_host=debug,warn",
        _ => "misp_enrich=trace,misp_enrich_host=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Demo(args) => demo(args).await,
        Command::Run(args) => run(*args).await,
        Command::Sync(args) => sync(args).await,
        Command::FluentBitModule(args) => write_module(&args),
        Command::FakeMisp(args) => fake_misp(args).await,
    }
}

fn load_runtime(component: Option<&Path>) -> Result<Runtime> {
    let runtime = match component {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("{}: cannot read the component", path.display()))
                .map_err(BadConfig)?;
            Runtime::new(&bytes).with_context(|| path.display().to_string())?
        }
        None => Runtime::new(embedded::COMPONENT)?,
    };
    Ok(runtime)
}

async fn demo(args: DemoArgs) -> Result<()> {
    let runtime = load_runtime(args.component.as_deref())?;
    let data = Dataset::from_json(embedded::DEMO_DATASET).context("the demo dataset")?;
    let mut settings = Settings::default();
    // The fake needs no network; the URL only names the origin it answers.
    settings.set("misp_url", "https://misp.demo.invalid");
    settings.set_api_key(Secret::new(data.api_key.clone()));
    let outbound = Outbound::new(
        settings.authority()?,
        settings.timeout_caps(),
        Upstream::Fake(FakeMisp::new(data)),
    );
    let lines = pipeline::read_lines(embedded::DEMO_LOG.as_bytes());
    enrich(&runtime, &settings, outbound, lines, Box::new(tokio::io::stdout())).await
}

async fn run(args: RunArgs) -> Result<()> {
    let settings = settings_from(&args).map_err(|err| BadConfig(err.into()))?;
    let runtime = load_runtime(args.component.as_deref())?;
    let tls =
        tls::client_config(args.access.ca_file.as_deref()).map_err(|e| BadConfig(e.into()))?;
    let authority = settings.authority().map_err(|err| BadConfig(err.into()))?;
    let outbound = Outbound::new(
        authority,
        settings.timeout_caps(),
        Upstream::Network(NetworkClient::new(tls)),
    );

    let input = match args.input.as_deref() {
        None => Input::Stdin,
        Some(path) if path == Path::new("-") => Input::Stdin,
        Some(path) if args.follow => Input::Follow(path.to_owned(), stop_on_ctrl_c()),
        Some(path) => Input::File(path.to_owned()),
    };
    let lines = input.open().await.with_context(|| match &input {
        Input::Stdin => "stdin".to_owned(),
        Input::File(path) | Input::Follow(path, _) => format!("{}: cannot read", path.display()),
    })?;
    let output: Box<dyn AsyncWrite + Unpin + Send> = match &args.output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("{}: cannot create", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let batching = Batching {
        batch_size: args.batch_size.max(1),
        linger: std::time::Duration::from_millis(args.batch_wait_ms),
    };
    enrich_with(&runtime, &settings, outbound, lines, output, batching).await
}

/// Turns Ctrl-C into a stop of the follower, so the run ends with a summary.
fn stop_on_ctrl_c() -> StopFlag {
    let stop = StopFlag::default();
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.stop();
        }
    });
    stop
}

fn settings_from(args: &RunArgs) -> Result<Settings, SettingsError> {
    let mut settings = base_settings(&args.access)?;

    let strings = [
        ("misp_url", &args.misp_url),
        ("event_url_base", &args.event_url_base),
        ("hit_tag", &args.hit_tag),
        ("failure_tag", &args.failure_tag),
    ];
    for (key, value) in strings {
        if let Some(value) = value {
            settings.set(key, value.as_str());
        }
    }
    let numbers = [
        ("cache_capacity", args.cache_capacity),
        ("hit_ttl_secs", args.hit_ttl_secs),
        ("miss_ttl_secs", args.miss_ttl_secs),
        ("connect_timeout_ms", args.connect_timeout_ms),
        ("response_timeout_ms", args.response_timeout_ms),
    ];
    for (key, value) in numbers {
        if let Some(value) = value {
            settings.set(key, value);
        }
    }
    let lists = [
        ("source_fields", &args.source_fields),
        ("attribute_types", &args.attribute_types),
        ("skip_networks", &args.skip_networks),
    ];
    for (key, list) in lists {
        if !list.is_empty() {
            settings.set(key, list.clone());
        }
    }
    if let Some(style) = args.output_style {
        let style = match style {
            OutputStyle::Nested => "nested",
            OutputStyle::Dotted => "dotted",
        };
        settings.set("output", style);
    }
    if args.enforce_warninglist {
        settings.set("enforce_warninglist", true);
    }
    settings.authority()?;
    Ok(settings)
}

/// The `--config` file (if any) and the API key, the way `run` and `sync`
/// both start.
fn base_settings(access: &MispAccess) -> Result<Settings, SettingsError> {
    let mut settings = match &access.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let key = match &access.api_key_file {
        Some(path) => settings::read_api_key_file(path)?,
        None => match std::env::var("MISP_API_KEY") {
            Ok(key) if !key.trim().is_empty() => Secret::new(key.trim()),
            _ => return Err(SettingsError::NoKey),
        },
    };
    settings.set_api_key(key);
    Ok(settings)
}

async fn sync(args: SyncArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let (core, caps) = sync_settings(&args).map_err(BadConfig)?;
    let tls =
        tls::client_config(args.access.ca_file.as_deref()).map_err(|e| BadConfig(e.into()))?;
    let allowed = Authority::from_url(&core.misp_url).map_err(|e| BadConfig(e.into()))?;
    let mut transport =
        NetworkTransport::new(NetworkClient::new(tls), allowed, caps, Handle::current());
    let taken_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let taken_at = i64::try_from(taken_at).unwrap_or(i64::MAX);

    // The core's transport blocks; it gets a thread of its own so that it
    // can wait on this runtime's network tasks.
    let url = core.misp_url.clone();
    let taken = tokio::task::spawn_blocking(move || {
        misp_enrich::sync::take_snapshot(&core, &mut transport, taken_at)
    })
    .await
    .context("the sync thread failed")?;
    let (text, stats) = taken.map_err(|err| {
        let hint = match &err {
            misp_enrich::LookupError::Status(403) => " (is the API key right, and enabled?)",
            _ => "",
        };
        anyhow!("sync from {url} failed: {err}{hint}; {} left as it was", args.output.display())
    })?;

    write_atomically(&args.output, text.as_bytes())
        .with_context(|| format!("{}: cannot write the snapshot", args.output.display()))?;
    eprintln!(
        "misp-enrich: {} from {} written to {} ({}, {}, {:.1} s)",
        counted(stats.addresses, "address", "addresses"),
        counted(stats.events, "event", "events"),
        args.output.display(),
        counted(stats.pages, "page", "pages"),
        counted(stats.requests, "request", "requests"),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// `1 page`, `2 pages`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The core's settings for a sync, and the host's timeouts for its requests.
fn sync_settings(args: &SyncArgs) -> Result<(misp_enrich::Settings, TimeoutCaps)> {
    let mut settings = base_settings(&args.access)?;
    if let Some(url) = &args.misp_url {
        settings.set("misp_url", url.as_str());
    }
    if let Some(ms) = args.connect_timeout_ms {
        settings.set("connect_timeout_ms", ms);
    }
    settings.authority()?;
    // An hour per page is already far beyond any healthy MISP; above it a
    // hung server would hold the scheduled sync (and its lock) for too long.
    anyhow::ensure!(
        (1..=3600).contains(&args.response_timeout_secs),
        "--response-timeout-secs {} must be between 1 and 3600",
        args.response_timeout_secs
    );
    // The core validates the whole document, so a typo in a shared config
    // file is refused here just as `run` would refuse it.
    let core = misp_enrich::Settings::from_json(settings.document()?.expose())?;
    let caps =
        TimeoutCaps::new(core.connect_timeout, Duration::from_secs(args.response_timeout_secs));
    Ok((core, caps))
}

fn write_module(args: &ModuleArgs) -> Result<()> {
    anyhow::ensure!(
        !embedded::FLUENT_BIT_MODULE.is_empty(),
        "this binary was built without the Fluent Bit module (is the wasm32-wasip1 target \
         installed?)"
    );
    write_atomically(&args.output, embedded::FLUENT_BIT_MODULE)
        .with_context(|| format!("{}: cannot write the module", args.output.display()))?;
    eprintln!(
        "misp-enrich: Fluent Bit module written to {} ({} bytes); function_name is {}",
        args.output.display(),
        embedded::FLUENT_BIT_MODULE.len(),
        FILTER_FUNCTION,
    );
    Ok(())
}

async fn enrich(
    runtime: &Runtime,
    settings: &Settings,
    outbound: Outbound,
    lines: tokio::sync::mpsc::Receiver<pipeline::Line>,
    output: Box<dyn AsyncWrite + Unpin + Send>,
) -> Result<()> {
    enrich_with(runtime, settings, outbound, lines, output, Batching::default()).await
}

async fn enrich_with(
    runtime: &Runtime,
    settings: &Settings,
    outbound: Outbound,
    lines: tokio::sync::mpsc::Receiver<pipeline::Line>,
    output: Box<dyn AsyncWrite + Unpin + Send>,
    batching: Batching,
) -> Result<()> {
    let document = settings.document().map_err(|err| BadConfig(err.into()))?;
    let mut enricher = match runtime.enricher(&document, outbound).await {
        Ok(enricher) => enricher,
        Err(err @ HostError::Rejected(_)) => return Err(BadConfig(err.into()).into()),
        Err(err) => return Err(err.into()),
    };
    tracing::info!("enricher ready");

    let bar = progress_bar();
    let mut progress = |written: u64| {
        if let Some(bar) = &bar {
            bar.set_position(written);
        }
    };
    let fields = settings.source_fields();
    let summary =
        pipeline::run(&mut enricher, lines, output, batching, &fields, &mut progress).await?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    eprintln!("{summary}");
    Ok(())
}

/// A spinner with a record count, only when a person watches stderr.
fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {pos} records ({per_sec})").ok()?;
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

async fn fake_misp(args: FakeArgs) -> Result<()> {
    let data = Dataset::from_file(&args.dataset).map_err(|err| BadConfig(err.into()))?;
    let fake = FakeMisp::new(data);
    let server = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = server::tls_config(cert, key).map_err(|err| BadConfig(anyhow!(err)))?;
            FakeServer::start_tls(fake, args.listen, tls).await
        }
        _ => FakeServer::start(fake, args.listen).await,
    };
    let server = server.with_context(|| format!("cannot listen on {}", args.listen))?;
    // The one line a script waits for before it starts sending.
    println!("listening on {}", server.url());
    tokio::select! {
        () = server.wait() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
