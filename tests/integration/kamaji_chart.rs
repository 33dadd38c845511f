//! Kamaji's own Helm chart, rendered with the local cluster's pinned helm: the
//! manager arguments it renders with default values are the ones
//! tests/manager_flags.rs starts `kamaji manager` with.

use std::{fs, path::Path};

use crate::helm::helm_ok;

const KAMAJI: &str = "26.8.2-edge";

/// The `args:` of the `manager` container in a rendered Deployment.
fn manager_args(rendered: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut inside = false;
    for line in rendered.lines() {
        let trimmed = line.trim_start();
        if trimmed == "- args:" {
            inside = true;
            continue;
        }
        if inside {
            match trimmed.strip_prefix("- ") {
                Some(arg) if line.len() - trimmed.len() >= 8 => args.push(arg.trim_matches('"').to_string()),
                _ => break,
            }
        }
    }
    args
}

/// Kamaji's chart, copied without its (unvendored) dependency, rendered with `values`:
/// the manager container's arguments.
fn render_manager_args(values: &[&str]) -> Vec<String> {
    let testdata = testdata();
    // helm refuses to render a chart whose dependency (the kamaji-etcd subchart) is not
    // vendored; the subchart adds etcd objects, never manager arguments, so a copy of the
    // chart without the dependency renders the same manager container.
    let copy = tempfile::tempdir().expect("a temporary directory");
    let chart = copy.path().join("kamaji");
    copy_dir(&testdata.join("charts/kamaji"), &chart);
    let chart_yaml = fs::read_to_string(chart.join("Chart.yaml")).expect("Chart.yaml");
    let without_dependencies: String = chart_yaml
        .split("\ndependencies:")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                return part.to_string();
            }
            // Drop the list that follows `dependencies:` up to the next top-level key.
            part.lines()
                .skip_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('-'))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(chart.join("Chart.yaml"), without_dependencies).expect("writing Chart.yaml");
    let _ = fs::remove_file(chart.join("Chart.lock"));
    let chart = chart.display().to_string();
    let mut args = vec![
        "template",
        "kamaji",
        &chart,
        "--namespace",
        "kamaji-system",
        "--show-only",
        "templates/controller.yaml",
    ];
    args.extend_from_slice(values);
    manager_args(&helm_ok(&args))
}

fn testdata() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/kamaji")
        .join(KAMAJI)
}

#[test]
fn the_stored_manager_args_are_what_the_chart_renders() {
    let testdata = testdata();
    let rendered_args = render_manager_args(&[]);
    let stored: Vec<String> = fs::read_to_string(testdata.join("manager-args.txt"))
        .expect("manager-args.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    println!("kamaji {}", rendered_args.join(" "));
    assert_eq!(
        rendered_args, stored,
        "re-render manager-args.txt (tests/testdata/kamaji/README.md)"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("creating a directory");
    for entry in fs::read_dir(from).expect("reading the chart").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).expect("copying a chart file");
        }
    }
}

/// Every optional argument of Kamaji's chart (telemetry off, development logging, no
/// default DataStore, extra arguments) starts the manager too.
#[test]
fn every_optional_argument_of_kamajis_chart_starts_the_manager() {
    let args = render_manager_args(&[
        "--set",
        "telemetry.disabled=true",
        "--set",
        "loggingDevel.enable=true",
        "--set",
        "defaultDatastoreName=",
        "--set",
        "extraArgs={--max-concurrent-tcp-reconciles=2,--zap-log-level=info}",
    ]);
    for expected in ["--disable-telemetry", "--zap-devel", "--zap-log-level=info"] {
        assert!(
            args.iter().any(|a| a == expected),
            "{expected} not rendered: {args:?}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kamaji"))
        .args(&args)
        .env("POD_NAMESPACE", "kamaji-system")
        .env("KUBECONFIG", "/nonexistent/kamaji-rs-test/kubeconfig")
        .env_remove("RUST_LOG")
        .output()
        .expect("running kamaji manager");
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("kamaji {}\n{stderr}", args.join(" "));
    assert_ne!(out.status.code(), Some(2), "usage error: {stderr}");
    assert!(
        stderr.contains("--disable-telemetry"),
        "named as unused: {stderr}"
    );
}
