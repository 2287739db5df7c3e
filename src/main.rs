//! The `cpe-agent` binary: parse the command line, set up logging, dispatch.

use clap::Parser;

fn main() {
    let cli = cpe_agent::cli::Cli::parse();
    cpe_agent::logging::init(cpe_agent::logging::level_for(cli.verbose, cli.quiet));
    let code = match cpe_agent::cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cpe-agent: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
