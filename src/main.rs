//! `kamaji`: the kamaji-rs operator and its tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Certificate-lifecycle operator for Kamaji-compatible tenant control planes.
#[derive(Parser)]
#[command(name = "kamaji", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (TenantControlPlane, DataStore) as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => kamaji::api::crds_yaml().map(|yaml| print!("{yaml}")).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
