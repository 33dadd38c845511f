//! A control-plane container of a tenant Deployment as the kubelet would set it
//! up, on this machine: the Secret volumes it mounts (projected or not, with
//! their items and subPaths) written under a root directory, and its flags with
//! every mount path moved there. Used by `kamaji dev control-plane` and by the
//! integration tests, so both run the exact Deployment the operator wrote.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Container, KeyToPath, Secret, Volume},
};

/// Why a container could not be laid out (never quotes Secret data).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The Deployment has no pod spec.
    #[error("the Deployment has no pod spec")]
    NoPodSpec,
    /// No container of that name.
    #[error("the Deployment has no {0} container")]
    NoContainer(String),
    /// A mount names a volume the pod does not declare.
    #[error("{container} mounts unknown volume {volume}")]
    UnknownVolume {
        /// The container.
        container: String,
        /// The volume.
        volume: String,
    },
    /// A mounted ConfigMap (or one of its keys) is not stored.
    #[error("configmap {config_map} has no key {key}")]
    MissingConfigMapKey {
        /// ConfigMap name.
        config_map: String,
        /// Data key.
        key: String,
    },
    /// A mounted Secret (or one of its keys) is not stored.
    #[error("secret {secret} has no key {key}")]
    MissingKey {
        /// Secret name.
        secret: String,
        /// Data key.
        key: String,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where a file of a volume comes from.
enum Source {
    Secret(String),
    ConfigMap(String),
}

/// One file of a volume: (source, data key, path inside the volume).
type VolumeFile = (Source, String, String);

/// The Secrets and ConfigMaps a pod's volumes read, by name.
pub struct Objects<'a> {
    /// Secrets by name.
    pub secrets: &'a BTreeMap<String, Secret>,
    /// ConfigMaps by name.
    pub config_maps: &'a BTreeMap<String, ConfigMap>,
}

/// Writes the files `container` mounts under `root` (Secret and ConfigMap volumes,
/// projected or not; empty directories) and returns its arguments with every mount
/// path moved there. Mount paths inside ConfigMap files are moved too (the egress
/// selector configuration names the konnectivity socket).
pub fn lay_out(
    deployment: &Deployment,
    objects: &Objects<'_>,
    container: &str,
    root: &Path,
) -> Result<Vec<String>, LayoutError> {
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .ok_or(LayoutError::NoPodSpec)?;
    let c: &Container = pod
        .containers
        .iter()
        .find(|c| c.name == container)
        .ok_or_else(|| LayoutError::NoContainer(container.to_string()))?;
    let volumes: BTreeMap<&str, Vec<VolumeFile>> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), volume_files(v)))
        .collect();
    let mut moves: Vec<(String, String)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let at = root.join(m.mount_path.trim_start_matches('/'));
            (m.mount_path.clone(), at.display().to_string())
        })
        .collect();
    longest_first(&mut moves);
    for mount in c.volume_mounts.iter().flatten() {
        let files = volumes
            .get(mount.name.as_str())
            .ok_or_else(|| LayoutError::UnknownVolume {
                container: container.to_string(),
                volume: mount.name.clone(),
            })?;
        let at = root.join(mount.mount_path.trim_start_matches('/'));
        create_dir(&at)?;
        for (source, key, path) in files {
            let target = match mount.sub_path.as_deref() {
                Some(sub) if sub == path => at.clone(),
                Some(_) => continue,
                None => at.join(path),
            };
            let bytes = match source {
                Source::Secret(name) => secret_data(objects.secrets, name, key)?.to_vec(),
                Source::ConfigMap(name) => {
                    moved_text(config_map_data(objects.config_maps, name, key)?, &moves)
                }
            };
            write(&target, &bytes)?;
        }
    }
    Ok(moved_args(c.args.iter().flatten(), &moves))
}

/// Longest mount paths first, so /etc/kubernetes/pki/x is not moved by a shorter prefix.
fn longest_first(moves: &mut [(String, String)]) {
    moves.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
}

fn create_dir(at: &Path) -> Result<(), LayoutError> {
    fs::create_dir_all(at).map_err(|source| LayoutError::Write {
        path: at.to_path_buf(),
        source,
    })
}

/// A ConfigMap file with each word that is a mount path moved under the root.
fn moved_text(text: &str, moves: &[(String, String)]) -> Vec<u8> {
    text.split(' ')
        .map(|word| moved(word, moves).unwrap_or_else(|| word.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
        .into_bytes()
}

/// `value` under the root when it is a mount path or below one.
fn moved(value: &str, moves: &[(String, String)]) -> Option<String> {
    moves
        .iter()
        .find(|(from, _)| value == from || value.starts_with(&format!("{from}/")))
        .map(|(from, to)| format!("{to}{}", &value[from.len()..]))
}

/// The files of a volume (Secret and ConfigMap volumes and the sources of projected ones).
fn volume_files(volume: &Volume) -> Vec<VolumeFile> {
    let mut files = Vec::new();
    let mut add = |source: &dyn Fn() -> Source, items: Option<&Vec<KeyToPath>>| {
        for item in items.into_iter().flatten() {
            files.push((source(), item.key.clone(), item.path.clone()));
        }
    };
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        add(&|| Source::Secret(name.clone()), secret.items.as_ref());
    }
    if let Some(map) = &volume.config_map {
        add(&|| Source::ConfigMap(map.name.clone()), map.items.as_ref());
    }
    for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(secret) = &source.secret {
            add(&|| Source::Secret(secret.name.clone()), secret.items.as_ref());
        }
        if let Some(map) = &source.config_map {
            add(&|| Source::ConfigMap(map.name.clone()), map.items.as_ref());
        }
    }
    files
}

/// `--flag=<mount path>/...` becomes `--flag=<root>/<mount path>/...`.
fn moved_args<'a>(args: impl Iterator<Item = &'a String>, moves: &[(String, String)]) -> Vec<String> {
    args.map(|arg| match arg.split_once('=') {
        Some((flag, value)) => moved(value, moves).map_or_else(|| arg.clone(), |v| format!("{flag}={v}")),
        None => arg.clone(),
    })
    .collect()
}

/// The text of `key` in the ConfigMap `name`.
fn config_map_data<'a>(
    maps: &'a BTreeMap<String, ConfigMap>,
    name: &str,
    key: &str,
) -> Result<&'a str, LayoutError> {
    maps.get(name)
        .and_then(|m| m.data.as_ref())
        .and_then(|d| d.get(key))
        .map(String::as_str)
        .ok_or_else(|| LayoutError::MissingConfigMapKey {
            config_map: name.to_string(),
            key: key.to_string(),
        })
}

/// The bytes of `key` in the Secret `name`.
pub fn secret_data<'a>(
    secrets: &'a BTreeMap<String, Secret>,
    name: &str,
    key: &str,
) -> Result<&'a [u8], LayoutError> {
    secrets
        .get(name)
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(key))
        .map(|v| v.0.as_slice())
        .ok_or_else(|| LayoutError::MissingKey {
            secret: name.to_string(),
            key: key.to_string(),
        })
}

/// Writes `bytes` to `path`, creating its parents; readable by the owner only,
/// as the files hold private keys.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let error = |source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(error)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    std::io::Write::write_all(&mut file, bytes).map_err(error)
}

/// Replaces (or adds) `--flag=value` for each pair.
pub fn set_flags(args: &mut Vec<String>, flags: &[(&str, String)]) {
    for (flag, value) in flags {
        let prefix = format!("--{flag}=");
        args.retain(|a| !a.starts_with(&prefix));
        args.push(format!("{prefix}{value}"));
    }
}

/// What a container of the Deployment needs changed to run on this machine beside
/// others: listen on 127.0.0.1 only, no leader election (one process, restarted
/// at will), no secure port for the controller-manager and the scheduler (two
/// tenants would want the same one; nothing here probes them).
pub fn local_flags(container: &str, cert_dir: &Path) -> Vec<(&'static str, String)> {
    match container {
        "kube-apiserver" => vec![
            ("bind-address", "127.0.0.1".into()),
            // A loopback advertise address is refused by the default lease reconciler.
            ("endpoint-reconciler-type", "none".into()),
            ("cert-dir", cert_dir.display().to_string()),
        ],
        _ => vec![
            ("bind-address", "127.0.0.1".into()),
            ("secure-port", "0".into()),
            ("leader-elect", "false".into()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_move_under_the_root_longest_first() {
        let args = [
            "--client-ca-file=/etc/kubernetes/pki/ca.crt".to_string(),
            "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt".to_string(),
            "--secure-port=6443".to_string(),
            "--allow-privileged".to_string(),
        ];
        let mut moves = vec![
            (
                "/etc/kubernetes/pki".to_string(),
                "/r/etc/kubernetes/pki".to_string(),
            ),
            ("/etc/kubernetes/pki/etcd".to_string(), "/r/etcd".to_string()),
        ];
        longest_first(&mut moves);
        assert_eq!(
            moved_args(args.iter(), &moves),
            [
                "--client-ca-file=/r/etc/kubernetes/pki/ca.crt",
                "--etcd-cafile=/r/etcd/ca.crt",
                "--secure-port=6443",
                "--allow-privileged",
            ]
        );
    }

    #[test]
    fn set_flags_replaces_or_adds() {
        let mut args = vec!["--bind-address=0.0.0.0".to_string(), "--v=2".to_string()];
        set_flags(
            &mut args,
            &[("bind-address", "127.0.0.1".into()), ("secure-port", "0".into())],
        );
        assert_eq!(args, ["--v=2", "--bind-address=127.0.0.1", "--secure-port=0"]);
    }
}
