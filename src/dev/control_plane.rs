//! `kamaji dev control-plane <tcp>`: runs a tenant's control plane on this machine
//! from the operator's own Deployment and Secrets, as its pod would run, for the
//! quick start on a management cluster whose pods are fakes (kwok). Each
//! container of the Deployment that this machine has a binary for
//! (kube-apiserver, kube-controller-manager, kube-scheduler) runs with its exact
//! flags, its files laid out as mounted ([`super::pod`]), listening on 127.0.0.1
//! only. Whenever the Deployment's generation changes (a rotation rolled it), the
//! processes stop and start again on the material stored then, as a rollout
//! replaces the pods. Not for production: hidden from `kamaji --help`.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, Client, Config,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use tokio::{process::Child, signal::unix::SignalKind};

use super::pod::{LayoutError, Objects, lay_out, local_flags, set_flags};
use crate::api::labels;

/// The containers run here, in start order; others (konnectivity-server) are not.
const COMPONENTS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
/// How often the Deployment's generation is read.
const POLL: Duration = Duration::from_secs(1);
/// A component that exited waits this long before its first restart, doubling up
/// to [`RESTART_MAX_DELAY`] (the kubelet's CrashLoopBackOff, shorter: the first
/// exits are a controller-manager started before its API server serves).
const RESTART_FIRST_DELAY: Duration = Duration::from_secs(1);
const RESTART_MAX_DELAY: Duration = Duration::from_secs(60);
/// A component that ran this long before it exited starts again at the first delay.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(120);

/// Arguments of `kamaji dev control-plane`.
#[derive(Clone, Debug, clap::Args)]
pub struct ControlPlaneArgs {
    /// The TenantControlPlane whose control plane to run.
    pub tcp: String,
    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig of the management cluster (default: $KUBECONFIG, ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Directory holding kube-apiserver, kube-controller-manager and kube-scheduler.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: PathBuf,
    /// Where the pod's files (`generation-<n>/`), the logs (`logs/`) and the
    /// generation being run (`generation`, written once its processes started) go.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// The processes of one generation of the Deployment.
struct Running {
    generation: i64,
    root: PathBuf,
    components: Vec<Component>,
}

/// One container of the pod, run as a process.
struct Component {
    name: &'static str,
    flags: Vec<String>,
    child: Child,
    restarts: CrashLoop,
}

/// When a component that keeps exiting starts again.
struct CrashLoop {
    delays: ExponentialBackoff,
    started: Instant,
    /// It exited: the time it starts again.
    due: Option<Instant>,
}

impl CrashLoop {
    fn new() -> Self {
        Self {
            delays: ExponentialBuilder::default()
                .with_min_delay(RESTART_FIRST_DELAY)
                .with_max_delay(RESTART_MAX_DELAY)
                .without_max_times()
                .build(),
            started: Instant::now(),
            due: None,
        }
    }

    /// The component exited now: how long it waits before it starts again.
    fn exited(&mut self) -> Duration {
        if self.started.elapsed() >= RESTART_RESET_AFTER {
            *self = Self::new();
        }
        let delay = self.delays.next().unwrap_or(RESTART_MAX_DELAY);
        self.due = Some(Instant::now() + delay);
        delay
    }

    /// Its restart is due now (and it is then counted as started).
    fn restart_due(&mut self) -> bool {
        if self.due.is_some_and(|due| Instant::now() >= due) {
            self.due = None;
            self.started = Instant::now();
            return true;
        }
        false
    }
}

impl Running {
    /// Stops every process (SIGKILL: the pod is being replaced) and removes its files,
    /// which hold private keys.
    async fn stop(mut self) {
        for component in &mut self.components {
            let _ = component.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Starts again each component that exited, as the kubelet restarts a container
    /// (a controller-manager started before its API server serves gives up after
    /// a few seconds), with a growing delay while it keeps exiting.
    fn restart_exited(&mut self, args: &ControlPlaneArgs) -> anyhow::Result<()> {
        for component in &mut self.components {
            if component.restarts.restart_due() {
                component.child = spawn(args, component.name, &component.flags)?;
            } else if component.restarts.due.is_none()
                && let Some(status) = component.child.try_wait()?
            {
                let delay = component.restarts.exited();
                println!(
                    "{} exited ({status}); restarting it in {}",
                    component.name,
                    humantime::format_duration(delay)
                );
            }
        }
        Ok(())
    }
}

/// Runs the command until SIGINT or SIGTERM.
pub async fn run(args: ControlPlaneArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let (client, namespace) = client(&args).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut running: Option<Running> = None;
    let outcome = loop {
        let step = follow(&args, &deployments, (&secrets, &config_maps), &mut running);
        tokio::select! {
            result = step => if let Err(error) = result { break Err(error) },
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(plane) = running.take() {
        plane.stop().await;
    }
    outcome
}

/// One look at the Deployment: (re)starts the processes when its generation moved.
async fn follow(
    args: &ControlPlaneArgs,
    deployments: &Api<Deployment>,
    (secrets, config_maps): (&Api<Secret>, &Api<ConfigMap>),
    running: &mut Option<Running>,
) -> anyhow::Result<()> {
    if let Some(plane) = running.as_mut() {
        plane.restart_exited(args)?;
    }
    let deployment = deployments
        .get(&args.tcp)
        .await
        .with_context(|| format!("reading the Deployment {}", args.tcp))?;
    let generation = deployment.metadata.generation.unwrap_or_default();
    if running.as_ref().is_some_and(|r| r.generation == generation) {
        return Ok(());
    }
    if let Some(previous) = running.take() {
        println!(
            "generation {generation}: stopping generation {}",
            previous.generation
        );
        previous.stop().await;
    }
    let secrets = tenant_objects(secrets, &args.tcp).await?;
    let config_maps = tenant_objects(config_maps, &args.tcp).await?;
    let objects = Objects {
        secrets: &secrets,
        config_maps: &config_maps,
    };
    *running = Some(start(args, &deployment, &objects, generation)?);
    std::fs::write(args.dir.join("generation"), generation.to_string())?;
    println!("generation {generation}: running {}", COMPONENTS.join(", "));
    Ok(())
}

/// Lays out and starts the components of the Deployment as stored now.
fn start(
    args: &ControlPlaneArgs,
    deployment: &Deployment,
    objects: &Objects<'_>,
    generation: i64,
) -> anyhow::Result<Running> {
    let root = args.dir.join(format!("generation-{generation}"));
    let mut plane = Running {
        generation,
        root: root.clone(),
        components: Vec::new(),
    };
    for name in COMPONENTS {
        let mut flags = match lay_out(deployment, objects, name, &root) {
            Ok(flags) => flags,
            Err(LayoutError::NoContainer(_)) => continue,
            Err(error) => return Err(error.into()),
        };
        set_flags(&mut flags, &local_flags(name, &root.join("apiserver-cert-dir")));
        let child = spawn(args, name, &flags)?;
        plane.components.push(Component {
            name,
            flags,
            child,
            restarts: CrashLoop::new(),
        });
    }
    Ok(plane)
}

/// Starts `name` with `flags`, appending its output to `<dir>/logs/<name>.log`.
fn spawn(args: &ControlPlaneArgs, name: &str, flags: &[String]) -> anyhow::Result<Child> {
    let logs = args.dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    let program = args.bin_dir.join(name);
    tokio::process::Command::new(&program)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// The tenant's Secrets or ConfigMaps by name (those the operator labelled as its).
async fn tenant_objects<K>(api: &Api<K>, tcp: &str) -> anyhow::Result<BTreeMap<String, K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let selector = format!("{}={tcp}", labels::NAME);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| {
            format!(
                "listing {} {selector}",
                std::any::type_name::<K>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("objects")
            )
        })?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| Some((o.meta().name.clone()?, o)))
        .collect())
}

async fn client(args: &ControlPlaneArgs) -> anyhow::Result<(Client, String)> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_that_keeps_exiting_waits_longer_each_time_up_to_a_minute() {
        let mut restarts = CrashLoop::new();
        let delays: Vec<u64> = (0..9).map(|_| restarts.exited().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!restarts.restart_due(), "not before its delay has passed");
    }
}
