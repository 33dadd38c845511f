//! `kamaji certs check-expiration`: kubeadm's expiry table for a tenant's Secrets
//! (cluster mode) or for a kubeadm-layout directory (`--pki-dir`, no cluster).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Config,
    api::{ApiResource, DynamicObject, ListParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use time::OffsetDateTime;

use crate::{
    api::{TenantControlPlane, labels},
    cli::table,
    pki::{
        catalog::Lifecycle,
        expiration::{ExpirationEntry, ExpirationReport, SecretView, tenant_report},
        inspect::{InspectError, inspect_certificate, inspect_kubeconfig},
    },
};

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// kubeadm's text table.
    #[default]
    #[value(alias = "text")]
    Table,
    /// kubeadm's `CertificateExpirationInfo` as JSON.
    Json,
    /// kubeadm's `CertificateExpirationInfo` as YAML.
    Yaml,
}

/// Arguments of `kamaji certs check-expiration`.
#[derive(Clone, Debug, clap::Args)]
pub struct CheckExpirationArgs {
    /// The TenantControlPlane whose certificates to check.
    #[arg(required_unless_present = "pki_dir", conflicts_with = "pki_dir")]
    pub tcp: Option<String>,
    /// Its namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Read a kubeadm-layout PKI directory instead of a cluster (ca.crt, apiserver.crt,
    /// front-proxy-client.crt, etcd/..., and admin.conf etc. here or in the parent directory).
    #[arg(long, value_name = "DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Kubeconfig of the management cluster (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// Runs the command: prints the report, and fails if some Secret or file was unreadable
/// (after printing what could be read).
pub async fn run(args: CheckExpirationArgs) -> anyhow::Result<()> {
    let (report, problems) = report(&args, OffsetDateTime::now_utc()).await?;
    print!("{}", render(&report, args.output)?);
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        bail!("{} certificate source(s) could not be read", problems.len());
    }
    Ok(())
}

/// The report and the sources that could not be read, from the cluster or `--pki-dir`.
pub async fn report(
    args: &CheckExpirationArgs,
    now: OffsetDateTime,
) -> anyhow::Result<(ExpirationReport, Vec<String>)> {
    match &args.pki_dir {
        Some(dir) => pki_dir_report(dir, now),
        None => cluster_report(args, now).await,
    }
}

/// The report in the requested format.
pub fn render(report: &ExpirationReport, format: OutputFormat) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Table => table::render(report),
        OutputFormat::Json => serde_json::to_string_pretty(&report.to_output())? + "\n",
        OutputFormat::Yaml => serde_saphyr::to_string(&report.to_output())?,
    })
}

async fn cluster_report(
    args: &CheckExpirationArgs,
    now: OffsetDateTime,
) -> anyhow::Result<(ExpirationReport, Vec<String>)> {
    let tcp = args
        .tcp
        .as_deref()
        .context("a TenantControlPlane name is required")?;
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
    let client = Client::try_from(config)?;

    let selector = format!("{}={tcp}", labels::NAME);
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("listing Secrets {selector} in namespace {namespace}"))?;
    if secrets.items.is_empty() {
        bail!(
            "no Secrets labelled {selector} in namespace {namespace}: is {tcp} a TenantControlPlane there?"
        );
    }

    // Non-etcd DataStores bring their own client certificate: for the tenant it is
    // externally managed. The TCP is read untyped; if it cannot be read, assume etcd.
    let resource = ApiResource::erase::<TenantControlPlane>(&());
    let driver = Api::<DynamicObject>::namespaced_with(client, &namespace, &resource)
        .get_opt(tcp)
        .await
        .ok()
        .flatten()
        .and_then(|tcp| {
            tcp.data
                .pointer("/status/storage/driver")?
                .as_str()
                .map(str::to_owned)
        });
    let datastore_external = driver.is_some_and(|d| !d.eq_ignore_ascii_case("etcd"));

    let views: Vec<SecretView<'_>> = secrets
        .items
        .iter()
        .filter_map(|secret| {
            let name = secret.metadata.name.as_deref()?;
            let lifecycle = secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::CERTIFICATE_LIFECYCLE))
                .and_then(|v| v.parse::<Lifecycle>().ok());
            let data = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.0.as_slice()))
                .collect::<BTreeMap<_, _>>();
            Some(SecretView {
                name,
                lifecycle,
                data,
            })
        })
        .collect();
    let (report, problems) = tenant_report(tcp, &views, now, datastore_external);
    let problems = problems
        .into_iter()
        .map(|p| format!("Secret {namespace}/{}: {}", p.secret, p.error))
        .collect();
    Ok((report, problems))
}

/// What a kubeadm PKI directory holds for one report line.
struct DirEntry {
    name: &'static str,
    path: &'static str,
    kubeconfig: bool,
    ca: &'static str,
    etcd: bool,
    optional: bool,
}

const fn cert(name: &'static str, path: &'static str, ca: &'static str, etcd: bool) -> DirEntry {
    DirEntry {
        name,
        path,
        kubeconfig: false,
        ca,
        etcd,
        optional: false,
    }
}

const fn conf(name: &'static str, optional: bool) -> DirEntry {
    DirEntry {
        name,
        path: name,
        kubeconfig: true,
        ca: "ca",
        etcd: false,
        optional,
    }
}

/// kubeadm's `check-expiration` list (kubelet.conf excluded, as kubeadm does; etcd rows
/// only with a local etcd CA; super-admin.conf only exists on the first control plane).
const DIR_CERTIFICATES: &[DirEntry] = &[
    conf("admin.conf", false),
    cert("apiserver", "apiserver.crt", "ca", false),
    cert(
        "apiserver-etcd-client",
        "apiserver-etcd-client.crt",
        "etcd-ca",
        true,
    ),
    cert(
        "apiserver-kubelet-client",
        "apiserver-kubelet-client.crt",
        "ca",
        false,
    ),
    conf("controller-manager.conf", false),
    cert(
        "etcd-healthcheck-client",
        "etcd/healthcheck-client.crt",
        "etcd-ca",
        true,
    ),
    cert("etcd-peer", "etcd/peer.crt", "etcd-ca", true),
    cert("etcd-server", "etcd/server.crt", "etcd-ca", true),
    cert(
        "front-proxy-client",
        "front-proxy-client.crt",
        "front-proxy-ca",
        false,
    ),
    conf("scheduler.conf", false),
    conf("super-admin.conf", true),
];

/// kubeadm's CAs: name, certificate, key, etcd-only.
const DIR_AUTHORITIES: &[(&str, &str, &str, bool)] = &[
    ("ca", "ca.crt", "ca.key", false),
    ("etcd-ca", "etcd/ca.crt", "etcd/ca.key", true),
    (
        "front-proxy-ca",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        false,
    ),
];

/// The report for a kubeadm-layout directory. Kubeconfigs are looked up in `dir`, then
/// in its parent (kubeadm keeps `/etc/kubernetes/pki` and `/etc/kubernetes/*.conf`).
pub fn pki_dir_report(dir: &Path, now: OffsetDateTime) -> anyhow::Result<(ExpirationReport, Vec<String>)> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let local_etcd = dir.join("etcd/ca.crt").is_file();
    let mut report = ExpirationReport {
        now,
        certificates: Vec::new(),
        certificate_authorities: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut external = BTreeMap::new();

    for &(name, cert_path, key_path, etcd) in DIR_AUTHORITIES {
        if etcd && !local_etcd {
            continue;
        }
        match read(&dir.join(cert_path))? {
            None => report
                .certificate_authorities
                .push(ExpirationEntry::missing(name, None)),
            Some(bytes) => match inspect_certificate(cert_path, &bytes) {
                Ok(info) => {
                    let has_key = dir.join(key_path).is_file();
                    external.insert(name, !has_key);
                    report.certificate_authorities.push(ExpirationEntry {
                        externally_managed: !has_key,
                        ..ExpirationEntry::present(name, info.not_after, None)
                    });
                }
                Err(e) => problems.push(file_problem(dir, &e)),
            },
        }
    }

    for entry in DIR_CERTIFICATES {
        if entry.etcd && !local_etcd {
            continue;
        }
        let mut candidates = vec![dir.join(entry.path)];
        if entry.kubeconfig
            && let Some(parent) = dir.parent()
        {
            candidates.push(parent.join(entry.path));
        }
        let mut found = None;
        for path in candidates {
            if let Some(bytes) = read(&path)? {
                found = Some(bytes);
                break;
            }
        }
        let Some(bytes) = found else {
            if !entry.optional {
                report
                    .certificates
                    .push(ExpirationEntry::missing(entry.name, Some(entry.ca)));
            }
            continue;
        };
        let not_after = if entry.kubeconfig {
            inspect_kubeconfig(entry.path, &bytes).map(|certs| certs.iter().map(|c| c.not_after).min())
        } else {
            inspect_certificate(entry.path, &bytes).map(|c| Some(c.not_after))
        };
        match not_after {
            Ok(Some(not_after)) => report.certificates.push(ExpirationEntry {
                externally_managed: external.get(entry.ca).copied().unwrap_or(false),
                ..ExpirationEntry::present(entry.name, not_after, Some(entry.ca))
            }),
            Ok(None) => report
                .certificates
                .push(ExpirationEntry::missing(entry.name, Some(entry.ca))),
            Err(e) => problems.push(file_problem(dir, &e)),
        }
    }
    Ok((report, problems))
}

fn read(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn file_problem(dir: &Path, error: &InspectError) -> String {
    format!("{}: {error}", dir.display())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CheckExpirationArgs,
    }

    #[test]
    fn arguments_parse_like_kubeadm_and_kubectl() {
        let cli = Cli::try_parse_from(["x", "k8s-133", "-n", "tenants", "-o", "yaml"]).unwrap();
        assert_eq!(cli.args.tcp.as_deref(), Some("k8s-133"));
        assert_eq!(cli.args.namespace.as_deref(), Some("tenants"));
        assert_eq!(cli.args.output, OutputFormat::Yaml);
        let dir = Cli::try_parse_from(["x", "--pki-dir", "/etc/kubernetes/pki", "-o", "text"]).unwrap();
        assert_eq!(dir.args.output, OutputFormat::Table);
        assert!(
            Cli::try_parse_from(["x"]).is_err(),
            "a tenant or --pki-dir is required"
        );
        assert!(Cli::try_parse_from(["x", "t", "--pki-dir", "/tmp"]).is_err());
        assert!(Cli::try_parse_from(["x", "t", "-o", "wide"]).is_err());
    }
}
