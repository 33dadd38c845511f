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

/// The manager container's `args:` as Kamaji's chart renders them with default values
/// (tests/testdata/kamaji/README.md says how they were produced; the integration test
/// `kamaji_chart` re-renders them with the pinned helm).
const KAMAJI_CHART_ARGS: &str = include_str!("testdata/kamaji/26.8.2-edge/manager-args.txt");

#[test]
fn the_argument_list_kamajis_chart_renders_starts_the_manager() {
    let args: Vec<&str> = KAMAJI_CHART_ARGS.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        args.first(),
        Some(&"manager"),
        "the chart's first argument is the subcommand"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .args(&args)
        // The chart's env; the kubeconfig does not exist, so the manager stops right after
        // parsing and logging, before it binds anything.
        .env("POD_NAMESPACE", "kamaji-system")
        .env("SERVICE_ACCOUNT", "kamaji-controller-manager")
        .env("KUBECONFIG", "/nonexistent/kamaji-rs-test/kubeconfig")
        .env_remove("RUST_LOG")
        .output()
        .expect("running kamaji manager");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("kamaji {}\n{stderr}", args.join(" "));
    assert_ne!(out.status.code(), Some(2), "usage error: {stderr}");
    assert!(
        !stderr.contains("unexpected argument") && !stderr.contains("Usage:"),
        "{stderr}"
    );
    let unused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("accepted but not used by kamaji-rs"))
        .collect();
    assert_eq!(
        unused.len(),
        1,
        "one startup line names the unused flags: {stderr}"
    );
    assert!(unused[0].contains("--tmp-directory"), "{}", unused[0]);
    assert!(
        stderr.contains("kubeconfig"),
        "parsed, then stopped on the missing kubeconfig: {stderr}"
    );
}
