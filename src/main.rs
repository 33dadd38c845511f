//! `kamaji`: the kamaji-rs operator and its tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kamaji::{cli::check_expiration::CheckExpirationArgs, runtime::manager::ManagerArgs};

/// Certificate-lifecycle operator for Kamaji-compatible tenant control planes:
/// issues, watches, rotates and rolls out every certificate, kubeconfig and CA
/// of each TenantControlPlane.
#[derive(Parser)]
// A flag given twice takes its last value, as Go's flag package does (Helm
// `extraArgs` can override a chart default).
#[command(name = "kamaji", version, about, long_about = None, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: controllers behind leader election, /healthz, /readyz, /metrics.
    Manager(Box<ManagerArgs>),
    /// Print the CustomResourceDefinitions (TenantControlPlane, DataStore) as YAML.
    Crd,
    /// Certificate tools, as `kubeadm certs`.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Development tools (the quick start); not for production.
    #[command(subcommand, hide = true)]
    Dev(DevCommand),
}

#[derive(Subcommand)]
enum DevCommand {
    /// Run a tenant's control plane on this machine from its Deployment and Secrets.
    ControlPlane(kamaji::dev::control_plane::ControlPlaneArgs),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Print when each certificate of a tenant expires (kubeadm's table).
    CheckExpiration(CheckExpirationArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Manager(args) => kamaji::runtime::manager::run(*args).await,
        Command::Crd => kamaji::api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Certs(CertsCommand::CheckExpiration(args)) => kamaji::cli::check_expiration::run(args).await,
        Command::Dev(DevCommand::ControlPlane(args)) => kamaji::dev::control_plane::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
