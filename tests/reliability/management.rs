//! A throwaway management cluster (tests/cluster/up.sh with a state directory of
//! its own: etcd, kube-apiserver, controller-manager, scheduler, kwok) whose
//! kube-apiserver or etcd the suite stops and starts again, without disturbing
//! the shared cluster other tests use. Stopped on drop (down.sh), and at the start
//! of the next run: its state directory is always the same one, so the processes
//! of a run that was killed before its drop do not outlive it for long.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

/// The cluster and its state directory.
pub struct Management {
    state: PathBuf,
    /// Its admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Components started again by the suite: reaped after down.sh stopped them.
    restarted: std::sync::Mutex<Vec<std::process::Child>>,
}

/// A component as it ran before it was stopped: what starts it again.
pub struct Stopped {
    name: String,
    program: PathBuf,
    args: Vec<String>,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cluster")
        .join(name)
}

impl Management {
    /// Starts the cluster (up.sh), once what a previous run left running is
    /// stopped; panics with its log when it does not come up.
    pub fn start() -> Self {
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-management");
        let _ = Command::new(script("down.sh"))
            .env("KAMAJI_CLUSTER_STATE", &state)
            .output();
        let output = Command::new(script("up.sh"))
            .env("KAMAJI_CLUSTER_STATE", &state)
            .output()
            .expect("running tests/cluster/up.sh");
        assert!(
            output.status.success(),
            "the throwaway management cluster did not start:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        Self {
            state,
            kubeconfig,
            restarted: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.state.join("pids").join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops `name` (SIGTERM, SIGKILL after 20 s) and returns what restarts it.
    pub async fn stop(&self, name: &str) -> Stopped {
        let pid = self.pid(name).unwrap_or_else(|| panic!("no pid file for {name}"));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("{name} (pid {pid}) is not running: {e}"));
        let mut args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let program = PathBuf::from(args.remove(0));
        signal("TERM", pid);
        for _ in 0..200 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if alive(pid) {
            signal("KILL", pid);
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Stopped {
            name: name.to_string(),
            program,
            args,
        }
    }

    /// Starts a stopped component again with the same arguments (its log appended),
    /// recorded in the pid file so down.sh stops it.
    pub fn start_again(&self, stopped: Stopped) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.join("logs").join(format!("{}.log", stopped.name)))
            .expect("opening the component log");
        let err = log.try_clone().expect("log handle");
        let child = Command::new(&stopped.program)
            .args(&stopped.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} again: {e}", stopped.name));
        std::fs::write(
            self.state.join("pids").join(&stopped.name),
            child.id().to_string(),
        )
        .expect("writing the pid file");
        self.restarted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
    }
}

impl Drop for Management {
    fn drop(&mut self) {
        let _ = Command::new(script("down.sh"))
            .env("KAMAJI_CLUSTER_STATE", &self.state)
            .output();
        for mut child in self.restarted.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status();
}

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z')
        })
        .unwrap_or(false)
}
