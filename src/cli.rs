//! The command line: a contract that docs, provider scripts and technicians rely on.
//!
//! - `cpe-agent run [--config PATH]`
//! - `cpe-agent discover [--config PATH] [--target SPEC]... [--json]`
//! - `cpe-agent diag [--config PATH] [--json] [--timeout DURATION] [--sweep]`
//! - `cpe-agent config check PATH`
//! - `cpe-agent config sign BUNDLE --key PRIVATE_KEY [--out FILE]`
//! - `cpe-agent config verify ENVELOPE --pubkey PUBLIC_KEY`
//! - `cpe-agent keygen --out PREFIX`
//!
//! The config path is `--config`, else `$CPE_AGENT_CONFIG`, else
//! `/etc/cpe-agent/agent.toml`.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, TargetSpec, CONFIG_ENV, DEFAULT_CONFIG_PATH};
use crate::discover::classify::{EVIDENCE_RULE, FALLBACK_RULE};
use crate::discover::{self, Plan, Progress};
use crate::keys;
use crate::message::Device;
use crate::provision::bundle;
use crate::text::clip;

#[derive(Debug, Parser)]
#[command(
    name = "cpe-agent",
    version,
    about = "Discovers and monitors the devices on a customer's LAN over SNMP and reports to the provider over MQTT."
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the daemon).
    Run(ConfigArg),
    /// Sweep once, print the devices found, and exit.
    Discover(DiscoverArgs),
    /// Check the gateway, the broker, the devices and the daemon.
    Diag(DiagArgs),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make a provider signing key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.
    Keygen {
        /// Where to write the keys, without extension (e.g. keys/provider).
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file [default: $CPE_AGENT_CONFIG or /etc/cpe-agent/agent.toml]
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to sweep instead of the configured targets: a CIDR, a range or a
    /// host, each with an optional :PORT (e.g. 127.0.1.0/24:16100). With
    /// --target and no --config, no config file is needed.
    #[arg(short, long = "target", value_name = "SPEC")]
    pub targets: Vec<TargetSpec>,
    /// The widest --target allowed, as a prefix length (8 to 32) [default:
    /// the config's discovery.max_prefix, 22]. A wider target is refused
    /// rather than swept.
    #[arg(long, value_name = "PREFIX", value_parser = clap::value_parser!(u8).range(8..=32))]
    pub max_prefix: Option<u8>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show which rule classified each device, and on what evidence.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args)]
pub struct DiagArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Give up on whatever is still running after this long (e.g. 30s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Also sweep the LAN and list new, lost and unclassified devices.
    #[arg(long)]
    pub sweep: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: exit 0 when valid, 1 with the errors.
    Check {
        /// The file to check.
        path: PathBuf,
    },
    /// Sign a bundle (JSON, see docs/provisioning.md); prints the envelope to push.
    Sign {
        /// The bundle file; its exact bytes are signed.
        bundle: PathBuf,
        /// The provider's private key (PKCS#8 PEM, from keygen or openssl genpkey).
        #[arg(long, value_name = "PRIVATE_KEY")]
        key: PathBuf,
        /// Write the envelope here instead of to stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show the provider-pushed config: the applied version, its status and history.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a signed envelope's signature, expiry and bundle: exit 0 when valid, 1 with the reason.
    Verify {
        /// The envelope file, as `config sign` writes it.
        bundle: PathBuf,
        /// The provider's public key (SPKI PEM, or the base64 raw key).
        #[arg(long, value_name = "PUBLIC_KEY")]
        pubkey: PathBuf,
    },
}

/// `--config`, else `$CPE_AGENT_CONFIG`, else the default path.
pub fn config_path(arg: &ConfigArg) -> PathBuf {
    arg.config
        .clone()
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// Runs a command; returns the process exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run(arg) => crate::daemon::run(config_path(&arg)).map(|()| 0),
        Command::Discover(args) => discover(args),
        Command::Diag(args) => Ok(crate::ops::diag::run(&crate::ops::diag::Options {
            config_path: config_path(&args.config),
            json: args.json,
            timeout: args.timeout,
            sweep: args.sweep,
        })),
        Command::Config(ConfigCommand::Check { path }) => Ok(check(&path)),
        Command::Config(ConfigCommand::Sign { bundle, key, out }) => {
            Ok(report(sign(&bundle, &key, out.as_deref())))
        }
        Command::Config(ConfigCommand::Show { config, json }) => show(&config_path(&config), json),
        Command::Config(ConfigCommand::Verify { bundle, pubkey }) => {
            Ok(report(verify(&bundle, &pubkey)))
        }
        Command::Keygen { out } => Ok(report(keygen(&out))),
    }
}

/// Prints an error and turns it into exit code 1.
fn report(result: Result<(), String>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// The most a file named on the command line (a bundle, an envelope, a key)
/// may hold.
const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    crate::files::read_bounded(path, MAX_INPUT_BYTES)
        .map_err(|e| format!("{}: cannot read the {what}: {e}", path.display()))
}

fn read_text(path: &Path, what: &str) -> Result<String, String> {
    String::from_utf8(read(path, what)?)
        .map_err(|_| format!("{}: the {what} is not UTF-8 text", path.display()))
}

fn sign(bundle: &Path, key: &Path, out: Option<&Path>) -> Result<(), String> {
    let bytes = read(bundle, "bundle")?;
    bundle::check_bundle(&bytes).map_err(|r| format!("{}: {r}", bundle.display()))?;
    let key = keys::parse_private_key(&read_text(key, "private key")?)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let envelope = bundle::sign(&bytes, &key);
    if envelope.len() > bundle::DEFAULT_MAX_BYTES {
        return Err(format!(
            "{}: the signed message would be {} bytes; agents accept at most {}",
            bundle.display(),
            envelope.len(),
            bundle::DEFAULT_MAX_BYTES
        ));
    }
    match out {
        Some(path) => std::fs::write(path, format!("{envelope}\n"))
            .map_err(|e| format!("{}: cannot write the envelope: {e}", path.display())),
        None => {
            println!("{envelope}");
            Ok(())
        }
    }
}

fn verify(envelope: &Path, pubkey: &Path) -> Result<(), String> {
    let key = keys::parse_public_key_file(&read_text(pubkey, "public key")?)
        .map_err(|e| format!("{}: {e}", pubkey.display()))?;
    let message = read(envelope, "envelope")?;
    // A file may end in a newline; the agent gets the message without it.
    let message = message.trim_ascii_end();
    let keys = [(keys::key_id(&key), key)];
    let checked = bundle::authenticate(message, &keys, bundle::DEFAULT_MAX_BYTES)
        .and_then(|b| bundle::check_expiry(&b, std::time::SystemTime::now()).map(|()| b))
        .map_err(|r| format!("{}: {r}", envelope.display()))?;
    println!(
        "valid: version {}, target {}, key id {}",
        checked.version, checked.target, checked.key_id
    );
    Ok(())
}

fn keygen(prefix: &Path) -> Result<(), String> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let with = |ext: &str| {
        let mut path = prefix.as_os_str().to_owned();
        path.push(ext);
        PathBuf::from(path)
    };
    let (private_path, public_path) = (with(".key"), with(".pub"));
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut_slice())
        .map_err(|e| format!("cannot get randomness from the system: {e}"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    // PKCS#8 v1 (no public key inside), as openssl writes: OpenSSL 3.0 reads no v2.
    let private = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| format!("cannot encode the private key: {e}"))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(format!(
                "{}: already exists; keygen never overwrites a key (remove it or choose another --out)",
                path.display()
            ));
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private_path)
        .and_then(|mut f| f.write_all(private.as_bytes()))
        .map_err(|e| {
            format!(
                "{}: cannot write the private key: {e} (does the directory exist, and may you write to it?)",
                private_path.display()
            )
        })?;
    std::fs::write(&public_path, public.as_bytes()).map_err(|e| {
        format!(
            "{}: cannot write the public key: {e}",
            public_path.display()
        )
    })?;
    let verifying = key.verifying_key();
    println!("private key: {} (keep it secret)", private_path.display());
    println!("public key:  {}", public_path.display());
    println!("key id:      {}", keys::key_id(&verifying));
    println!("add to the agents' config, [provisioning]:");
    println!(
        "public_keys = [\"{}\"]",
        keys::public_key_base64(&verifying)
    );
    Ok(())
}

/// `config show`: what provisioning has on disk (never secrets: setting
/// names, not values).
fn show(path: &Path, json: bool) -> anyhow::Result<i32> {
    let config = discover::load_config(path, None)?;
    let state = crate::provision::show(&config.storage.state_dir).map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&state)?);
        return Ok(0);
    }
    print!("{}", render_show(&state));
    Ok(0)
}

fn render_show(state: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let applied = &state["applied"];
    if applied.is_null() {
        out.push_str("applied version: none (the config file alone is in effect)\n");
    } else {
        let _ = writeln!(
            out,
            "applied version: {} (key {}, at {})",
            text(&applied["version"]),
            text(&applied["key_id"]),
            text(&applied["applied_at"])
        );
        let settings: Vec<String> = applied["agent_settings"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "pushed settings: {}",
            if settings.is_empty() {
                "none".into()
            } else {
                settings.join(", ")
            }
        );
        let _ = writeln!(out, "device SETs: {}", text(&applied["device_sets"]));
    }
    let _ = writeln!(out, "status: {}", text(&state["status"]));
    if !state["last_error"].is_null() {
        let _ = writeln!(out, "last error: {}", text(&state["last_error"]));
    }
    if let Some(j) = state["in_progress"].as_object() {
        let _ = writeln!(
            out,
            "in progress: version {} at step {} (finished or rolled back when the agent starts)",
            text(&j["version"]),
            text(&j["step"])
        );
    }
    let history = state["history"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "history ({} pushes, newest last):", history.len());
    for entry in history {
        let at = entry["at"]
            .as_u64()
            .map(|s| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                )
                .to_string()
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            "  {at}  version {}  {}",
            text(&entry["version"]),
            text(&entry["status"])
        );
        if let Some(reason) = entry["reason"].as_str() {
            let _ = write!(out, "  {reason}");
        }
        out.push('\n');
    }
    out
}

fn check(path: &std::path::Path) -> i32 {
    match discover::load_config(path, None) {
        Ok(_) => {
            println!("{}: valid", path.display());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn discover(args: DiscoverArgs) -> anyhow::Result<i32> {
    // With --target alone, no file is read: the defaults (community "public") apply.
    let mut config = if args.targets.is_empty() || args.config.config.is_some() {
        discover::load_config(&config_path(&args.config), None)?
    } else {
        Config::default()
    };
    if let Some(max_prefix) = args.max_prefix {
        config.discovery.max_prefix = max_prefix;
    }
    if !args.targets.is_empty() {
        for target in &args.targets {
            if let Err(e) = target.check_size(config.discovery.max_prefix, "--max-prefix ") {
                eprintln!("--target {e}");
                return Ok(2);
            }
        }
        config.discovery.targets = args.targets;
        config.discovery.lan_subnets = false;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sweep = runtime.block_on(async {
        let plan = Plan::new(&config).await;
        let plan = if args.explain {
            plan.explaining()
        } else {
            plan
        };
        let (_trigger, mut shutdown) = crate::shutdown::channel();
        discover::sweep_once(&plan, Progress::default(), &mut shutdown).await
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&sweep.devices)?);
    } else {
        print!("{}", table(&sweep.devices));
        if args.explain {
            print!("{}", explain(&sweep.devices));
        }
        println!(
            "{} device(s) found among {} address(es) in {:.1}s",
            sweep.devices.len(),
            sweep.probed,
            sweep.elapsed.as_secs_f64()
        );
    }
    Ok(0)
}

/// A plain aligned table of the devices.
pub fn table(devices: &[Device]) -> String {
    let header = [
        "ADDRESS", "KIND", "VENDOR", "MODEL", "FIRMWARE", "IFACES", "ID",
    ];
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            let c = &d.inventory.classification;
            vec![
                d.socket_addr().to_string(),
                c.kind.to_string(),
                dash(&c.vendor),
                clip(&dash(&c.model), 32),
                clip(&dash(&c.firmware), 24),
                d.inventory.interfaces.len().to_string(),
                d.id.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Per device: what decided its kind (a rule, or the weighed evidence with
/// every signal's votes and each candidate kind's score), and the evidence
/// for vendor, model, firmware and serial.
pub fn explain(devices: &[Device]) -> String {
    let mut out = String::new();
    for d in devices {
        let c = &d.inventory.classification;
        let by = match c.rule.as_str() {
            EVIDENCE_RULE => "by the weighed evidence".to_string(),
            FALLBACK_RULE => "for want of evidence".to_string(),
            rule => format!("by rule {rule}"),
        };
        out.push_str(&format!(
            "\n{} ({}): kind {} {by}, confidence {}\n",
            d.socket_addr(),
            d.id,
            c.kind,
            c.confidence
        ));
        for reason in &c.evidence {
            out.push_str(&format!("  - {reason}\n"));
        }
        let subtrees: Vec<&str> = d.inventory.subtrees.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "  subtrees: {}\n",
            if subtrees.is_empty() {
                "-".to_string()
            } else {
                subtrees.join(", ")
            }
        ));
    }
    out
}
