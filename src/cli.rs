//! The command line: a contract that docs, provider scripts and technicians rely on.
//!
//! - `cpe-agent run [--config PATH]`
//! - `cpe-agent discover [--config PATH] [--target SPEC]... [--json]`
//! - `cpe-agent diag [--config PATH] [--json] [--timeout DURATION] [--sweep]`
//! - `cpe-agent config check PATH`
//!
//! The config path is `--config`, else `$CPE_AGENT_CONFIG`, else
//! `/etc/cpe-agent/agent.toml`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, CONFIG_ENV, DEFAULT_CONFIG_PATH};
use crate::discovery::{self, Device};
use crate::target::TargetSpec;

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
        Command::Diag(args) => Ok(crate::diag::run(&crate::diag::Options {
            config_path: config_path(&args.config),
            json: args.json,
            timeout: args.timeout,
            sweep: args.sweep,
        })),
        Command::Config(ConfigCommand::Check { path }) => Ok(check(&path)),
    }
}

fn check(path: &std::path::Path) -> i32 {
    match config::load(path) {
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
        config::load(&config_path(&args.config))?
    } else {
        Config::default()
    };
    if !args.targets.is_empty() {
        config.discovery.targets = args.targets;
        config.discovery.lan_subnets = false;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sweep = runtime.block_on(async {
        let targets = discovery::sweep_targets(&config.discovery);
        let addresses = discovery::expand(&targets).await;
        let credentials: Arc<[config::Credential]> = config.credentials_or_default().into();
        let rules = Arc::new(config.rules());
        let (_trigger, mut shutdown) = crate::shutdown::channel();
        discovery::sweep(
            addresses,
            credentials,
            rules,
            &config.discovery,
            None,
            &mut shutdown,
        )
        .await
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

/// Per device: the rule that decided its kind, and the evidence.
pub fn explain(devices: &[Device]) -> String {
    let mut out = String::new();
    for d in devices {
        let c = &d.inventory.classification;
        out.push_str(&format!(
            "\n{} ({}): kind {} by rule {}\n",
            d.socket_addr(),
            d.id,
            c.kind,
            c.rule
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

/// One line of at most `max` characters, with an ellipsis when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let flat = text.replace(['\r', '\n'], " ");
    if flat.chars().count() <= max {
        return flat;
    }
    let kept: String = flat.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}
