//! `kamaji manager --certificate-expiration-deadline`, through the binary: humantime
//! values (`7d`, `36h`, `1w`) are accepted, anything else stops startup with a
//! message naming the flag. No cluster needed: the accepted values fail later, on
//! the kubeconfig that does not exist.

use std::process::{Command, Output};

fn manager(deadline: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .arg("manager")
        .arg(format!("--certificate-expiration-deadline={deadline}"))
        .args(["--kubeconfig", "/nonexistent/kamaji-rs-test/kubeconfig"])
        .env_remove("KUBECONFIG")
        .output()
        .expect("running kamaji manager")
}

#[test]
fn a_deadline_that_is_not_a_duration_stops_startup_naming_the_flag() {
    for bad in ["7x", "seven days", "0s", "-1d"] {
        let out = manager(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("--certificate-expiration-deadline"),
            "{bad}: the message names the flag: {stderr}"
        );
        println!("{bad}: {}", stderr.lines().next().unwrap_or_default());
    }
}

#[test]
fn humantime_deadlines_are_accepted() {
    for good in ["7d", "36h", "1w", "24h"] {
        let out = manager(good);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{good}: no kubeconfig, no manager");
        assert!(
            !stderr.contains("--certificate-expiration-deadline"),
            "{good} was rejected: {stderr}"
        );
        assert!(
            stderr.contains("kubeconfig"),
            "{good}: parsed, then failed on the missing kubeconfig: {stderr}"
        );
    }
}
